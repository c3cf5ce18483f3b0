package rootfs

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/safefs"
)

// capabilityXattr is the only xattr Podman's tar writer (containers/storage)
// records: file capabilities, which a restored ping or similar needs.
const capabilityXattr = "security.capability"

// paxXattrPrefix is how tar carries an xattr in PAX records.
const paxXattrPrefix = "SCHILY.xattr."

// File type bits of a tar header's mode, which Podman's writer sets (Go's
// own FileInfoHeader leaves them out).
const (
	modeFifo    = 0o010000
	modeChar    = 0o020000
	modeDir     = 0o040000
	modeBlock   = 0o060000
	modeRegular = 0o100000
	modeSymlink = 0o120000
)

// WriteDiff writes c into dir as Podman's checkpoint does:
// format.RootfsDiffTar, an uncompressed ustar of c.Added read from root,
// and format.DeletedFilesFile, c.Deleted as a JSON array indented by two
// spaces. Like Podman, it writes neither file when it has nothing to record,
// and reports which it wrote. It archives exactly c.Added, in its order: a
// directory's content only as far as c.Added lists it (Compare and
// FromOverlay list all of a new directory's content).
//
// The tar's members have names relative to root without "./", directories
// ending in "/"; mode (with the file type bits), uid, gid and mtime (rounded
// to the second) from disk; hard links between members as link entries;
// file capabilities as a PAX xattr record. User and group names are "root"
// for id 0 and empty otherwise: the host's user database does not describe
// the container's files, and restore uses the numeric ids. Sockets cannot
// be archived and are left out, as Podman does.
//
// Files are opened below root without following symlinks, so a container
// that swaps a directory for a symlink cannot make WriteDiff archive host
// files.
func WriteDiff(ctx context.Context, dir, root string, c *Changes) (wroteDiff, wroteDeleted bool, err error) {
	for _, d := range c.Deleted {
		if !strings.HasPrefix(d, "/") || safefs.CheckClean(d[1:]) != nil {
			return false, false, fmt.Errorf("write rootfs diff: %w: deleted path %q is not clean and absolute", safefs.ErrUnsafe, d)
		}
	}
	if len(c.Added) > 0 {
		wroteDiff, err = writeDiffTar(ctx, filepath.Join(dir, format.RootfsDiffTar), root, c.Added)
		if err != nil {
			return false, false, fmt.Errorf("write rootfs diff of %s: %w", root, err)
		}
	}
	if len(c.Deleted) > 0 {
		// Podman's metadata.WriteJSONFile: MarshalIndent, mode 0600, no
		// final newline.
		data, err := json.MarshalIndent(c.Deleted, "", "  ")
		if err != nil {
			return wroteDiff, false, fmt.Errorf("write deleted files: %w", err)
		}
		err = writeAtomic(filepath.Join(dir, format.DeletedFilesFile), 0o600, func(f *os.File) (bool, error) {
			_, err := f.Write(data)
			return true, err
		})
		if err != nil {
			return wroteDiff, false, fmt.Errorf("write deleted files: %w", err)
		}
		wroteDeleted = true
	}
	return wroteDiff, wroteDeleted, nil
}

// writeAtomic creates p through a temporary file in the same directory, so
// that a failure never leaves a partial file under the final name. fill
// reports whether the file is worth keeping.
func writeAtomic(p string, perm os.FileMode, fill func(*os.File) (keep bool, err error)) (err error) {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	keep, err := fill(f)
	if err != nil {
		return err
	}
	if !keep {
		f.Close()
		return os.Remove(tmp)
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// writeDiffTar writes the tar of names read from root to p and reports
// whether it wrote one (not when every name was a socket).
func writeDiffTar(ctx context.Context, p, root string, names []string) (bool, error) {
	rfd, err := safefs.OpenDir(root)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(rfd)

	var members int
	err = writeAtomic(p, 0o644, func(f *os.File) (bool, error) {
		bw := bufio.NewWriterSize(f, 1<<20)
		tw := tar.NewWriter(bw)
		w := &diffWriter{root: rfd, tw: tw, links: make(map[fileID]string)}
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			if err := safefs.CheckClean(name); err != nil {
				return false, fmt.Errorf("%q: %w", name, err)
			}
			wrote, err := w.add(ctx, name)
			if err != nil {
				return false, fmt.Errorf("%s: %w", name, err)
			}
			if wrote {
				members++
			}
		}
		if members == 0 {
			return false, nil
		}
		if err := tw.Close(); err != nil {
			return false, err
		}
		return true, bw.Flush()
	})
	return members > 0, err
}

// fileID identifies an inode, to find hard links.
type fileID struct{ dev, ino uint64 }

type diffWriter struct {
	root  int
	tw    *tar.Writer
	links map[fileID]string // first member name of each multiply linked file
}

// add writes the member for name, or nothing for a socket.
func (w *diffWriter) add(ctx context.Context, name string) (bool, error) {
	pfd, base, err := safefs.OpenParent(w.root, name, nil)
	if err != nil {
		return false, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, fmt.Errorf("stat: %w", err)
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		Uname:   idName(st.Uid),
		Gname:   idName(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return true, w.addFile(ctx, pfd, base, hdr, &st)
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Mode, hdr.Name = tar.TypeDir, hdr.Mode|modeDir, name+"/"
	case unix.S_IFLNK:
		target, err := safefs.ReadlinkAt(pfd, base)
		if err != nil {
			return false, fmt.Errorf("readlink: %w", err)
		}
		hdr.Typeflag, hdr.Mode, hdr.Linkname = tar.TypeSymlink, hdr.Mode|modeSymlink, target
	case unix.S_IFCHR:
		hdr.Typeflag, hdr.Mode = tar.TypeChar, hdr.Mode|modeChar
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		hdr.Typeflag, hdr.Mode = tar.TypeBlock, hdr.Mode|modeBlock
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag, hdr.Mode = tar.TypeFifo, hdr.Mode|modeFifo
	default:
		return false, nil // a socket
	}
	return true, w.tw.WriteHeader(hdr)
}

// addFile writes a regular file, or a link member for a further name of a
// file already written.
func (w *diffWriter) addFile(ctx context.Context, pfd int, base string, hdr *tar.Header, st *unix.Stat_t) error {
	hdr.Mode |= modeRegular
	id := fileID{st.Dev, st.Ino}
	if st.Nlink > 1 {
		if first, ok := w.links[id]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return w.tw.WriteHeader(hdr)
		}
		w.links[id] = hdr.Name
	}
	// O_NONBLOCK: if a fifo took the file's place since the stat, opening
	// it must not hang; the inode check below catches the swap.
	fd, err := safefs.OpenAt(pfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	f := os.NewFile(uintptr(fd), hdr.Name)
	defer f.Close()
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if fst.Dev != st.Dev || fst.Ino != st.Ino {
		return errors.New("replaced while being archived")
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, fst.Size
	caps, ok, err := fgetxattr(fd, capabilityXattr)
	if err != nil {
		return fmt.Errorf("read %s: %w", capabilityXattr, err)
	}
	if ok {
		hdr.PAXRecords = map[string]string{paxXattrPrefix + capabilityXattr: string(caps)}
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := safefs.Copy(ctx, w.tw, io.LimitReader(f, fst.Size), nil)
	if err != nil {
		return err
	}
	if n != fst.Size {
		return fmt.Errorf("shrank from %d to %d bytes while being archived", fst.Size, n)
	}
	return nil
}

// idName is the user or group name a member gets for id.
func idName(id uint32) string {
	if id == 0 {
		return "root"
	}
	return ""
}

// fgetxattr reads attr of an open file; a missing attribute is ok == false.
func fgetxattr(fd int, attr string) ([]byte, bool, error) {
	return readXattr(func(buf []byte) (int, error) { return unix.Fgetxattr(fd, attr, buf) })
}
