package rootfs

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// All file system access below goes through directory descriptors and
// single-component *at calls with O_NOFOLLOW or AT_SYMLINK_NOFOLLOW: a root
// filesystem belongs to the container, and a symlink in it (or one a tar
// member just created) must never redirect a read, write or removal to the
// host.

// openAt is openat(2) with O_CLOEXEC, retried when a signal interrupts it
// (network and FUSE file systems do that; Go's os package retries too).
func openAt(dirfd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// openDir opens the directory at p, the anchor of all later *at calls.
func openDir(p string) (int, error) {
	return openAt(unix.AT_FDCWD, p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
}

// openSubdir opens the directory name inside dirfd for reading, refusing a
// symlink in its place.
func openSubdir(dirfd int, name string) (int, error) {
	return openAt(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
}

// openParent opens the directory that holds rel (a clean relative path,
// see cleanRel) one component at a time, without following any symlink,
// and returns it with rel's last component. With create, missing
// directories are made with mode 0755, as tar does for the parents a member
// implies. The descriptor is an O_PATH one: good for *at calls only.
func openParent(root int, rel string, create bool) (int, string, error) {
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
		next, err := openAt(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = openAt(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
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

// readDirNames lists the directory open at fd (not O_PATH), sorted, so that
// walks and their output are deterministic.
func readDirNames(fd int) ([]string, error) {
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

// readlinkAt reads the target of the symlink name inside dirfd.
func readlinkAt(dirfd int, name string) (string, error) {
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

// lgetxattrAt reads the extended attribute attr of name inside dirfd
// without following a symlink. Linux has no getxattrat before 6.13, so the
// path goes through /proc/self/fd, which pins the directory.
func lgetxattrAt(dirfd int, name, attr string) (val []byte, ok bool, err error) {
	return lgetxattr(fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name), attr)
}

// lgetxattr reads the extended attribute attr of p without following a
// final symlink. A missing attribute, or a file system without xattrs, is
// reported as ok == false.
func lgetxattr(p, attr string) (val []byte, ok bool, err error) {
	return readXattr(func(buf []byte) (int, error) { return unix.Lgetxattr(p, attr, buf) })
}

// readXattr calls get with a growing buffer until the value fits.
func readXattr(get func([]byte) (int, error)) ([]byte, bool, error) {
	for size := 64; ; size *= 4 {
		buf := make([]byte, size)
		n, err := get(buf)
		switch {
		case errors.Is(err, unix.ERANGE) && size < 1<<20:
			continue
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
			return nil, false, nil
		case err != nil:
			return nil, false, err
		}
		return buf[:n], true, nil
	}
}

// chmodFd changes the mode of the file an O_PATH descriptor refers to.
// fchmod(2) refuses O_PATH descriptors; fchmodat2 with AT_EMPTY_PATH
// (Linux 6.6) takes them, and /proc/self/fd serves older kernels.
func chmodFd(fd int, mode uint32) error {
	err := unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode)
	}
	return err
}

// removeAllAt removes name inside dirfd and, for a directory, everything in
// it, through descriptors only: a symlink anywhere in the tree is removed,
// never followed. p names the path in errors.
func removeAllAt(ctx context.Context, dirfd int, name, p string) error {
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
	fd, err := openSubdir(dirfd, name)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	names, err := readDirNames(fd)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("read %s: %w", p, err)
	}
	for _, n := range names {
		if err := removeAllAt(ctx, fd, n, p+"/"+n); err != nil {
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

// cleanRel checks that name is a clean relative path inside the root (no
// "..", no "." or empty components, not absolute, not the root itself), as
// Compare and FromOverlay produce them.
func cleanRel(name string) error {
	if name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("%w: leads outside the root", ErrUnsafe)
	}
	if name == "" || name == "." || strings.HasPrefix(name, "/") || path.Clean(name) != name {
		return fmt.Errorf("%w: not a clean relative path", ErrUnsafe)
	}
	return nil
}

// join appends name to the relative directory rel ("" is the root).
func join(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

func isDir(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }
