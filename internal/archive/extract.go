package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/safefs"
)

// Defaults for ExtractOptions' zero values: far above any real checkpoint's
// member count, and high enough for a container with tens of GiB of memory.
const (
	DefaultMaxBytes = 64 << 30
	DefaultMaxFiles = 1_000_000
)

// ExtractOptions bound what a hostile archive can make Extract write.
type ExtractOptions struct {
	MaxBytes int64 // total size of file content; 0 means DefaultMaxBytes
	MaxFiles int   // files and directories; 0 means DefaultMaxFiles
}

// ExtractStats describes what Extract created.
type ExtractStats struct {
	Members int   // files and directories created, implied parents included
	Bytes   int64 // file content
	// Verified says the archive carried format.ManifestFile and every
	// member matched it.
	Verified bool
}

// Extract unpacks the archive read from r (compression detected by content)
// into destDir, which must exist. Only regular files and directories are
// created; members that are links, devices or fifos, or whose names lead
// outside destDir, are errors, and no symlink found in destDir is ever
// followed. Files keep their permission bits without setuid, setgid or sticky
// and belong to the caller; directories are always at least 0700 so that
// Podman's 0600 checkpoint/ can be entered.
//
// On error destDir may hold part of the archive; the caller removes it.
func Extract(ctx context.Context, r io.Reader, destDir string, opts ExtractOptions) (ExtractStats, error) {
	var st ExtractStats
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	root, err := safefs.OpenDir(destDir)
	if err != nil {
		return st, fmt.Errorf("open destination %s: %w", destDir, err)
	}
	defer unix.Close(root)

	a, err := openArchive(ctx, r, streamLimit(opts), opts.MaxFiles)
	if err != nil {
		return st, err
	}
	defer a.close()
	x := &extractor{root: root, a: a, buf: make([]byte, copyChunk), maxFiles: opts.MaxFiles, sums: newDigests()}
	for {
		hdr, err := a.next(ctx)
		if errors.Is(err, io.EOF) {
			// Nothing of the archive is used before this point, so a
			// mismatch is found before anything acts on the content.
			st.Verified, err = x.sums.check(func() ([]byte, error) {
				return readManifest(root)
			})
			return st, err
		}
		if err != nil {
			return st, err
		}
		st.Members = x.members
		if hdr.Typeflag == tar.TypeDir {
			err = x.dir(strings.TrimSuffix(hdr.Name, "/"), dirMode(hdr.Mode))
		} else {
			if hdr.Size > opts.MaxBytes-st.Bytes {
				return st, fmt.Errorf("%s: %w: more than %d bytes of files", hdr.Name, ErrLimit, opts.MaxBytes)
			}
			var n int64
			n, err = x.file(ctx, hdr)
			st.Bytes += n
		}
		st.Members = x.members
		if err != nil {
			return st, fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

// streamLimit is how long a decompressed tar stream may be: the file content
// allowed plus generous room for headers and padding.
func streamLimit(opts ExtractOptions) int64 {
	const perMember, slack = 8 * blockSize, 1 << 20
	if opts.MaxFiles > (math.MaxInt64-slack)/perMember {
		return math.MaxInt64
	}
	overhead := int64(opts.MaxFiles)*perMember + slack
	if opts.MaxBytes > math.MaxInt64-overhead {
		return math.MaxInt64
	}
	return opts.MaxBytes + overhead
}

// dirMode keeps the permission bits and makes the directory usable by its
// owner, which extraction and later reads need.
func dirMode(m int64) uint32 {
	return uint32(m)&0o777 | 0o700
}

type extractor struct {
	root     int // destination directory
	a        *archiveReader
	buf      []byte
	members  int // files and directories created, implied ones included
	maxFiles int
	sums     *digests
}

// count accounts for one more file or directory. Directories that members
// imply count too: one long name could otherwise create thousands.
func (x *extractor) count() error {
	if x.members >= x.maxFiles {
		return fmt.Errorf("%w: more than %d files and directories", ErrLimit, x.maxFiles)
	}
	x.members++
	return nil
}

// openParent opens the directory that will hold name, creating missing
// ancestors (which count as members: one long name could otherwise create
// thousands), without following any symlink in the destination.
func (x *extractor) openParent(name string) (int, string, error) {
	return safefs.OpenParent(x.root, name, func(dirfd int, c string) error {
		if err := x.count(); err != nil {
			return err
		}
		return safefs.Mkdir0755(dirfd, c)
	})
}

func (x *extractor) dir(name string, mode uint32) error {
	pfd, base, err := x.openParent(name)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := x.count(); err != nil {
		return err
	}
	if err := unix.Mkdirat(pfd, base, 0o700); errors.Is(err, unix.EEXIST) {
		x.members--
	} else if err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	// An existing directory (created for an earlier member) is fine; a
	// file or a symlink is not.
	fd, err := safefs.OpenSubdir(pfd, base)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return errors.New("exists and is not a directory")
		}
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// file creates a regular file and returns how many bytes it wrote.
func (x *extractor) file(ctx context.Context, hdr *tar.Header) (int64, error) {
	pfd, base, err := x.openParent(hdr.Name)
	if err != nil {
		return 0, err
	}
	defer unix.Close(pfd)
	if err := x.count(); err != nil {
		return 0, err
	}
	if err := safefs.EnsureFree(pfd, hdr.Size); err != nil {
		return 0, err
	}
	// O_EXCL refuses whatever is already there, a symlink included.
	fd, err := safefs.OpenAt(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if errors.Is(err, unix.EEXIST) {
		return 0, fmt.Errorf("create: %w (a duplicate member, or the destination was not empty)", err)
	}
	if err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), hdr.Name)
	defer f.Close()

	n, err := safefs.Copy(ctx, x.sums.writer(hdr.Name, f), &bodyReader{a: x.a}, x.buf)
	if err != nil {
		return n, err
	}
	x.sums.done(hdr.Name)
	if err := f.Chmod(os.FileMode(hdr.Mode & 0o777)); err != nil {
		return n, err
	}
	// The mtime is informational: a value the file system refuses (archive
	// headers can hold any date) is no reason to fail a restore.
	mt := unix.Timespec{Sec: hdr.ModTime.Unix(), Nsec: int64(hdr.ModTime.Nanosecond())}
	_ = unix.UtimesNanoAt(pfd, base, []unix.Timespec{mt, mt}, unix.AT_SYMLINK_NOFOLLOW)
	if err := f.Close(); err != nil {
		return n, err
	}
	return n, nil
}
