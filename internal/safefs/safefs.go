// Package safefs opens, creates and removes files below a directory that an untrusted party controls (a container's root filesystem, an archive being unpacked) through directory descriptors and single-component *at calls with O_NOFOLLOW, so that no symlink ever redirects an access outside it.
package safefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/errdefs"
)

// ErrUnsafe means a path (an archive member's name, a link target, a
// deleted path) would lead outside the directory, through a symlink, or to
// a file the caller did not create itself.
var ErrUnsafe = errdefs.New(errdefs.ErrInvalidArchive, "unsafe path")

// OpenAt is openat(2) with O_CLOEXEC, retried when a signal interrupts it
// (network and FUSE file systems do that; Go's os package retries too).
func OpenAt(dirfd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// OpenDir opens the directory at p, the anchor of all later *at calls.
func OpenDir(p string) (int, error) {
	return OpenAt(unix.AT_FDCWD, p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
}

// OpenSubdir opens the directory name inside dirfd for reading, refusing a
// symlink in its place.
func OpenSubdir(dirfd int, name string) (int, error) {
	return OpenAt(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
}

// OpenParent opens the directory that holds rel (a clean relative path,
// see CheckClean) one component at a time, without following any symlink,
// and returns it with rel's last component. A missing directory is made
// with mkdir(dirfd, name) when mkdir is not nil. The descriptor is an O_PATH
// one: good for *at calls only.
func OpenParent(root int, rel string, mkdir func(dirfd int, name string) error) (int, string, error) {
	dir, base := path.Split(rel)
	fd, err := unix.FcntlInt(uintptr(root), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, "", err
	}
	if dir == "" {
		return fd, base, nil
	}
	comps := strings.Split(strings.TrimSuffix(dir, "/"), "/")
	for i, c := range comps {
		next, err := OpenAt(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if errors.Is(err, unix.ENOENT) && mkdir != nil {
			if err = mkdir(fd, c); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = OpenAt(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
			}
		}
		if err != nil {
			err = componentError(fd, c, strings.Join(comps[:i+1], "/"), err)
			unix.Close(fd)
			return -1, "", err
		}
		unix.Close(fd)
		fd = next
	}
	return fd, base, nil
}

// Mkdir0755 makes a directory as tar does for the parents a member
// implies; it serves as OpenParent's mkdir.
func Mkdir0755(dirfd int, name string) error { return unix.Mkdirat(dirfd, name, 0o755) }

// componentError explains why the directory component c (display path p)
// inside dirfd could not be opened, telling a symlink from other non-
// directories: only the first is an attempt to leave the root.
func componentError(dirfd int, c, p string, err error) error {
	if !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("open %s: %w", p, err)
	}
	var st unix.Stat_t
	if unix.Fstatat(dirfd, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%w: %s is a symlink, which is never followed", ErrUnsafe, p)
	}
	return fmt.Errorf("%s: %w", p, unix.ENOTDIR)
}

// ReadDirNames lists the directory open at fd (not O_PATH), sorted, so that
// walks and their output are deterministic.
func ReadDirNames(fd int) ([]string, error) {
	buf := make([]byte, 32<<10)
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	sort.Strings(names)
	return names, nil
}

// ReadlinkAt reads the target of the symlink name inside dirfd.
func ReadlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// ChmodFd changes the mode of the file an O_PATH descriptor refers to.
// fchmod(2) refuses O_PATH descriptors; fchmodat2 with AT_EMPTY_PATH
// (Linux 6.6) takes them, and /proc/self/fd serves older kernels.
func ChmodFd(fd int, mode uint32) error {
	err := unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode)
	}
	return err
}

// RemoveAllAt removes name inside dirfd and, for a directory, everything in
// it, through descriptors only: a symlink anywhere in the tree is removed,
// never followed. p names the path in errors.
func RemoveAllAt(ctx context.Context, dirfd int, name, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	fd, err := OpenSubdir(dirfd, name)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	names, err := ReadDirNames(fd)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("read %s: %w", p, err)
	}
	for _, n := range names {
		if err := RemoveAllAt(ctx, fd, n, p+"/"+n); err != nil {
			unix.Close(fd)
			return err
		}
	}
	unix.Close(fd)
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// CheckClean checks that name is a clean relative path inside the root (no
// "..", no "." or empty components, not absolute, not the root itself).
func CheckClean(name string) error {
	if name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("%w: leads outside the root", ErrUnsafe)
	}
	if name == "" || name == "." || strings.HasPrefix(name, "/") || path.Clean(name) != name {
		return fmt.Errorf("%w: not a clean relative path", ErrUnsafe)
	}
	return nil
}

// CleanName turns an untrusted relative name (a tar member's, a hard link's
// target) into a clean relative path: "./" prefixes and "." or empty
// components go, "" stands for the root itself. Absolute names and names
// with a ".." component are refused.
func CleanName(raw string) (string, error) {
	if strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("%w: absolute name", ErrUnsafe)
	}
	var out []string
	for _, c := range strings.Split(raw, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf(`%w: name contains ".."`, ErrUnsafe)
		}
		out = append(out, c)
	}
	return strings.Join(out, "/"), nil
}

// copyChunk is how much Copy copies between two looks at the context, so
// that cancelling a copy of GiBs takes effect quickly.
const copyChunk = 1 << 20

// Copy copies src to dst until src ends, looking at ctx before each chunk
// of at most 1 MiB; buf, if not nil, is the buffer to use.
func Copy(ctx context.Context, dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	return CopyN(ctx, dst, src, -1, buf)
}

// CopyN is Copy of exactly n bytes (all of src when n < 0). A src shorter
// than n gives io.ErrUnexpectedEOF.
func CopyN(ctx context.Context, dst io.Writer, src io.Reader, n int64, buf []byte) (int64, error) {
	if buf == nil {
		buf = make([]byte, 256<<10)
	}
	var done int64
	for n < 0 || done < n {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		chunk := int64(copyChunk)
		if n >= 0 {
			chunk = min(chunk, n-done)
		}
		m, err := io.CopyBuffer(dst, io.LimitReader(src, chunk), buf)
		done += m
		if err != nil {
			return done, err
		}
		if m < chunk {
			if n >= 0 {
				return done, io.ErrUnexpectedEOF
			}
			return done, nil
		}
	}
	return done, nil
}

// RemoveTree removes the directory p and everything in it, through
// descriptors only, holding two at a time however deep the tree: an
// archive can nest directories deeper than RLIMIT_NOFILE, which defeats
// os.RemoveAll (one descriptor per level) and so any cleanup built on it.
// Each subdirectory is renamed up into p before it is emptied, so the walk
// never descends more than one level. A symlink is removed, never
// followed.
func RemoveTree(ctx context.Context, p string) error {
	root, err := OpenAt(unix.AT_FDCWD, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		if err := unix.Unlink(p); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s: %w", p, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	err = emptyDir(ctx, root, p)
	unix.Close(root)
	if err != nil {
		return err
	}
	if err := unix.Rmdir(p); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// emptyDir removes everything in the directory open at root (named p in
// errors).
func emptyDir(ctx context.Context, root int, p string) error {
	moved := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := unix.Seek(root, 0, 0); err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		names, err := ReadDirNames(root)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if len(names) == 0 {
			return nil
		}
		for _, n := range names {
			err := unix.Unlinkat(root, n, 0)
			if err == nil || errors.Is(err, unix.ENOENT) {
				continue
			}
			if !errors.Is(err, unix.EISDIR) {
				return fmt.Errorf("remove %s/%s: %w", p, n, err)
			}
			if err := unix.Unlinkat(root, n, unix.AT_REMOVEDIR); err == nil || errors.Is(err, unix.ENOENT) {
				continue
			}
			sub, err := OpenSubdir(root, n)
			if err != nil {
				return fmt.Errorf("open %s/%s: %w", p, n, err)
			}
			err = hoist(root, sub, p+"/"+n, &moved)
			unix.Close(sub)
			if err != nil {
				return err
			}
			if err := unix.Unlinkat(root, n, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("remove %s/%s: %w", p, n, err)
			}
		}
	}
}

// hoist empties the directory open at sub: files go, subdirectories are
// renamed into root under fresh names, for emptyDir's next round.
func hoist(root, sub int, p string, moved *int) error {
	names, err := ReadDirNames(sub)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	for _, n := range names {
		err := unix.Unlinkat(sub, n, 0)
		if err == nil || errors.Is(err, unix.ENOENT) {
			continue
		}
		if !errors.Is(err, unix.EISDIR) {
			return fmt.Errorf("remove %s/%s: %w", p, n, err)
		}
		if err := unix.Unlinkat(sub, n, unix.AT_REMOVEDIR); err == nil {
			continue
		}
		for {
			*moved++
			err = unix.Renameat2(sub, n, root, fmt.Sprintf(".crtool-rm-%d", *moved), unix.RENAME_NOREPLACE)
			if !errors.Is(err, unix.EEXIST) {
				break
			}
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s/%s: %w", p, n, err)
		}
	}
	return nil
}

// FreeReserve is the space EnsureFree leaves free on the file system: an
// archive's files must not make the host run out.
const FreeReserve = 256 << 20

// ErrNoSpace means a file an archive asks for does not fit.
var ErrNoSpace = errdefs.New(errdefs.ErrConflict, "not enough free space")

// EnsureFree checks, before a file of size bytes is written in the
// directory dirfd, that it leaves FreeReserve free: a small compressed
// archive can declare members of any size.
func EnsureFree(dirfd int, size int64) error {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(dirfd, &fs); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if free := int64(fs.Bavail) * fs.Bsize; size > free-FreeReserve {
		return fmt.Errorf("%w: %d bytes, %d free (%d MiB stay in reserve)", ErrNoSpace, size, max(free, 0), FreeReserve>>20)
	}
	return nil
}
