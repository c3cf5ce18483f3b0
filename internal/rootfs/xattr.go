package rootfs

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

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

// join appends name to the relative directory rel ("" is the root).
func join(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

func isDir(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }
