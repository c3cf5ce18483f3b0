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
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/safefs"
)

// Apply applies a checkpoint's root filesystem changes to dir, a writable
// copy (or overlay mount) of the image's root filesystem, in the order of
// Podman's restore: it untars diffTar (rootfs-diff.tar) over dir, then
// removes each path listed in deletedJSON (deleted.files) with everything
// below it. Either may be "" when the archive has no such member.
//
// The archive is not trusted to stay inside dir:
//   - tar member names and hard link targets that are absolute or contain
//     ".." are refused (a leading "./" is fine);
//   - no symlink is ever followed, neither one in the image nor one an
//     earlier member created: a member below a symlink is refused;
//   - a hard link may only point to a non-directory that an earlier member
//     of the same tar created, and that is still there;
//   - deleted paths are resolved the same way: "/x/../../etc" and paths
//     through a symlink are refused, a final symlink is removed itself.
//
// Refusals match safefs.ErrUnsafe and name the member or path. Apply stops at the
// first one, possibly after applying earlier members; a deleted.files path
// that is unsafe by its text alone is refused before anything changes.
//
// An existing path is replaced by the member for it, except that a
// directory member over a directory merges (like tar and Podman). Members
// keep their permission bits including setuid, setgid and sticky, mtime
// and, when running as root, owner and file capabilities: it is the
// container's own filesystem being restored. Other xattrs in PAX records
// are ignored (Podman writes none). Device nodes need root (errdefs.ErrUnsupported
// otherwise); as non-root, files belong to the caller.
//
// Directory modes and times are set after the last member, so that a
// read-only directory can still receive its content.
// Limits bound what an archive's rootfs-diff.tar can make Apply write: a
// few MB of compressed tar can otherwise fill the disk. Zero values take
// the defaults.
type Limits struct {
	MaxBytes   int64 // file content; default DefaultMaxBytes
	MaxMembers int   // members; default DefaultMaxMembers
	// AllowDevices creates the block and character device nodes the tar
	// holds; without it they are refused (the container would reach the
	// host's hardware through them, subject only to the devices cgroup
	// that the archive's own cgroup.img restores).
	AllowDevices bool
}

// Defaults of Limits, far above what a container writes to its root
// filesystem between start and checkpoint.
const (
	DefaultMaxBytes   = 16 << 30
	DefaultMaxMembers = 1_000_000
)

func Apply(ctx context.Context, dir, diffTar, deletedJSON string, lim Limits) error {
	var deleted []string
	if deletedJSON != "" {
		var err error
		if deleted, err = readDeleted(deletedJSON); err != nil {
			return fmt.Errorf("apply %s to %s: %w", deletedJSON, dir, err)
		}
	}
	root, err := safefs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("apply rootfs changes: open %s: %w", dir, err)
	}
	defer unix.Close(root)

	if diffTar != "" {
		if lim.MaxBytes <= 0 {
			lim.MaxBytes = DefaultMaxBytes
		}
		if lim.MaxMembers <= 0 {
			lim.MaxMembers = DefaultMaxMembers
		}
		a := &applier{root: root, asRoot: os.Geteuid() == 0, written: make(map[string]fileID), lim: lim}
		if err := a.applyTar(ctx, diffTar); err != nil {
			return fmt.Errorf("apply %s to %s: %w", diffTar, dir, err)
		}
	}
	for _, d := range deleted {
		if err := removeDeleted(ctx, root, d); err != nil {
			return fmt.Errorf("apply %s to %s: deleted path %q: %w", deletedJSON, dir, d, err)
		}
	}
	return nil
}

// readDeleted reads deleted.files and checks every path's text.
func readDeleted(p string) ([]string, error) {
	data, err := format.ReadMetadataFile(p, format.DeletedFilesFile)
	if err != nil {
		return nil, err
	}
	var deleted []string
	if err := json.Unmarshal(data, &deleted); err != nil {
		return nil, fmt.Errorf("not a JSON array of paths: %w", err)
	}
	for _, d := range deleted {
		if _, err := cleanAbs(d); err != nil {
			return nil, fmt.Errorf("deleted path %q: %w", d, err)
		}
	}
	return deleted, nil
}

// cleanAbs checks a deleted path, absolute as in deleted.files (a relative
// one is taken relative to the root too, as Podman's filepath.Join does),
// and returns it relative to the root.
func cleanAbs(p string) (string, error) {
	rel := strings.TrimLeft(p, "/")
	if rel == "" {
		return "", fmt.Errorf("%w: the root itself", safefs.ErrUnsafe)
	}
	for _, c := range strings.Split(rel, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: leads outside the root", safefs.ErrUnsafe)
		}
	}
	if err := safefs.CheckClean(rel); err != nil {
		return "", err
	}
	return rel, nil
}

// removeDeleted removes the deleted path d below root. A path that is
// already gone is fine, as in Podman (os.RemoveAll).
func removeDeleted(ctx context.Context, root int, d string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rel, err := cleanAbs(d)
	if err != nil {
		return err
	}
	pfd, base, err := safefs.OpenParent(root, rel, nil)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return safefs.RemoveAllAt(ctx, pfd, base, rel)
}

type applier struct {
	root    int
	asRoot  bool
	lim     Limits
	members int               // members applied
	bytes   int64             // file content written
	written map[string]fileID // non-directories this tar created: hard link targets
	dirs    []dirMeta         // directories whose mode and times are set last
}

type dirMeta struct {
	name  string
	id    fileID
	mode  uint32
	times []unix.Timespec
}

func (a *applier) applyTar(ctx context.Context, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if err := a.member(ctx, tr, hdr); err != nil {
			return fmt.Errorf("member %q: %w", hdr.Name, err)
		}
	}
	return a.finishDirs()
}

func (a *applier) member(ctx context.Context, tr *tar.Reader, hdr *tar.Header) error {
	name, err := safefs.CleanName(hdr.Name)
	if err != nil {
		return err
	}
	if a.members++; a.members > a.lim.MaxMembers {
		return fmt.Errorf("%w: more than %d members", errdefs.ErrInvalidArchive, a.lim.MaxMembers)
	}
	for k := range hdr.PAXRecords {
		// archive/tar expands a sparse file to its full size: a few KB
		// of tar would write GiBs of zeros.
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("%w: sparse files are not supported", errdefs.ErrInvalidArchive)
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	case tar.TypeChar, tar.TypeBlock:
		if !a.lim.AllowDevices {
			return errdefs.Hint(errdefs.Newf(errdefs.ErrInvalidArchive, "device node %d:%d refused", hdr.Devmajor, hdr.Devminor), "pass ", "AllowDevices", " to create it")
		}
		if !a.asRoot {
			return fmt.Errorf("%w: device node (needs root)", errdefs.ErrUnsupported)
		}
	default:
		return fmt.Errorf("%w: member type %q", errdefs.ErrUnsupported, hdr.Typeflag)
	}
	if name == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: a non-directory for the root itself", safefs.ErrUnsafe)
		}
		return nil // like Podman, the root keeps its own metadata
	}

	var link *linkSource
	if hdr.Typeflag == tar.TypeLink {
		// Checked before anything is replaced: a refused link changes nothing.
		if link, err = a.linkSource(hdr.Linkname); err != nil {
			return err
		}
		defer unix.Close(link.pfd)
	}

	pfd, base, err := safefs.OpenParent(a.root, name, safefs.Mkdir0755)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("stat: %w", err)
	}
	exists := err == nil
	if exists && !(isDir(&st) && hdr.Typeflag == tar.TypeDir) {
		if err := safefs.RemoveAllAt(ctx, pfd, base, name); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
		exists = false
	}

	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		return a.dir(pfd, base, name, hdr, exists)
	case tar.TypeReg:
		return a.file(ctx, pfd, base, name, hdr, tr)
	case tar.TypeLink:
		if err := unix.Linkat(link.pfd, link.base, pfd, base, 0); err != nil {
			return fmt.Errorf("link to %s: %w", link.name, err)
		}
		a.written[name] = link.id
		return nil
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		return a.meta(pfd, base, name, hdr, unix.S_IFLNK)
	case tar.TypeChar, tar.TypeBlock:
		kind := uint32(unix.S_IFCHR)
		if hdr.Typeflag == tar.TypeBlock {
			kind = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(pfd, base, kind|mode, int(dev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		return a.meta(pfd, base, name, hdr, kind)
	default: // tar.TypeFifo
		if err := unix.Mknodat(pfd, base, unix.S_IFIFO|mode, 0); err != nil {
			return fmt.Errorf("mkfifo: %w", err)
		}
		return a.meta(pfd, base, name, hdr, unix.S_IFIFO)
	}
}

// linkSource is a hard link's target, open and checked.
type linkSource struct {
	name string
	pfd  int
	base string
	id   fileID
}

// linkSource resolves a hard link target; it must be a non-directory an
// earlier member created, still in place: anything else could be an image
// file outside the container's view or, via a crafted path, a host file.
func (a *applier) linkSource(target string) (*linkSource, error) {
	name, err := safefs.CleanName(target)
	if err != nil {
		return nil, fmt.Errorf("hard link target %q: %w", target, err)
	}
	id, ok := a.written[name]
	if !ok {
		return nil, fmt.Errorf("%w: hard link target %q is not an earlier member", safefs.ErrUnsafe, target)
	}
	pfd, base, err := safefs.OpenParent(a.root, name, nil)
	if err != nil {
		return nil, fmt.Errorf("hard link target %q: %w", target, err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || (fileID{st.Dev, st.Ino}) != id {
		unix.Close(pfd)
		return nil, fmt.Errorf("%w: hard link target %q is no longer the member written", safefs.ErrUnsafe, target)
	}
	return &linkSource{name: name, pfd: pfd, base: base, id: id}, nil
}

// dir creates (or, when exists, keeps) a directory. It stays 0700 until
// finishDirs gives it its mode.
func (a *applier) dir(pfd int, base, name string, hdr *tar.Header, exists bool) error {
	if !exists {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	fd, err := safefs.OpenAt(pfd, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if a.asRoot {
		if err := unix.Fchownat(fd, "", hdr.Uid, hdr.Gid, unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	a.dirs = append(a.dirs, dirMeta{
		name:  name,
		id:    fileID{st.Dev, st.Ino},
		mode:  uint32(hdr.Mode) & 0o7777,
		times: times(hdr),
	})
	return nil
}

// file creates a regular file with the member's content. O_EXCL after the
// replacement step means that nothing already there, a symlink least of
// all, is written through.
func (a *applier) file(ctx context.Context, pfd int, base, name string, hdr *tar.Header, tr io.Reader) error {
	if a.bytes += hdr.Size; a.bytes > a.lim.MaxBytes {
		return fmt.Errorf("%w: more than %d bytes of files", errdefs.ErrInvalidArchive, a.lim.MaxBytes)
	}
	if err := safefs.EnsureFree(pfd, hdr.Size); err != nil {
		return err
	}
	fd, err := safefs.OpenAt(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if _, err := safefs.Copy(ctx, f, tr, nil); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if a.asRoot {
		if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	// After chown, which clears setuid and setgid.
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if caps, ok := hdr.PAXRecords[paxXattrPrefix+capabilityXattr]; ok && a.asRoot {
		if err := unix.Fsetxattr(fd, capabilityXattr, []byte(caps), 0); err != nil {
			return fmt.Errorf("set %s: %w", capabilityXattr, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := unix.UtimesNanoAt(pfd, base, times(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	a.written[name] = fileID{st.Dev, st.Ino}
	return nil
}

// meta gives a symlink, device or fifo just created (of type kind) its
// owner, mode and times without following anything.
func (a *applier) meta(pfd int, base, name string, hdr *tar.Header, kind uint32) error {
	fd, err := safefs.OpenAt(pfd, base, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != kind {
		return errors.New("replaced while being created")
	}
	if a.asRoot {
		if err := unix.Fchownat(fd, "", hdr.Uid, hdr.Gid, unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if kind != unix.S_IFLNK { // Linux has no symlink modes
		if err := safefs.ChmodFd(fd, uint32(hdr.Mode)&0o7777); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if err := unix.UtimesNanoAt(pfd, base, times(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	a.written[name] = fileID{st.Dev, st.Ino}
	return nil
}

// finishDirs sets the mode and times of the directories the tar listed,
// last so that writing their content neither fails on a read-only mode nor
// moves their mtime. A directory a later member replaced is skipped.
func (a *applier) finishDirs() error {
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		if err := a.finishDir(d); err != nil {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
	}
	return nil
}

func (a *applier) finishDir(d dirMeta) error {
	pfd, base, err := safefs.OpenParent(a.root, d.name, nil)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, safefs.ErrUnsafe) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	fd, err := safefs.OpenAt(pfd, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil // removed, or replaced by a non-directory
	}
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if (fileID{st.Dev, st.Ino}) != d.id {
		return nil
	}
	if err := safefs.ChmodFd(fd, d.mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := unix.UtimesNanoAt(pfd, base, d.times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// times are the access and modification times for a member: ustar has no
// atime, so it is the mtime unless a PAX record gave one.
func times(hdr *tar.Header) []unix.Timespec {
	mt := hdr.ModTime
	at := hdr.AccessTime
	if at.IsZero() {
		at = mt
	}
	return []unix.Timespec{timespec(at), timespec(mt)}
}

// timespec converts t without UnixNano, which overflows after 2262.
func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}
