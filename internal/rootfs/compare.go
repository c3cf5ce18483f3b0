package rootfs

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/safefs"
)

// Changes are a container root filesystem's differences from its image,
// split the way Podman's checkpoint archives carry them: Added goes into
// rootfs-diff.tar, Deleted into deleted.files.
type Changes struct {
	// Added are the files, symlinks, special files and directories that are
	// new or modified, as clean paths relative to the root, in tar order: a
	// new directory comes before its content. A directory that also exists
	// in the image is not listed (Podman ignores mode and owner changes of
	// directories), only what changed inside it.
	Added []string
	// Deleted are the image's paths that are gone, absolute ("/bin/ls") as
	// in deleted.files, sorted; only the topmost path of a deleted
	// directory tree.
	Deleted []string
}

// RuntimePaths are the paths that Podman leaves out of a container's diff
// (libpod's initInodes): the OCI runtime and Podman create them in every
// container's root filesystem as mount points or generated files, so they
// are not the container's own changes and a restore creates them again.
var RuntimePaths = []string{
	"/dev",
	"/etc/hostname",
	"/etc/hosts",
	"/etc/mtab",
	"/etc/resolv.conf",
	"/proc",
	"/run",
	"/run/.containerenv",
	"/run/notify",
	"/run/podman-init",
	"/run/secrets",
	"/sys",
}

// Without returns a copy of c without the entries for paths (absolute, as
// RuntimePaths). Like Podman it drops only those exact entries: what a
// container wrote below such a directory stays.
func (c *Changes) Without(paths ...string) *Changes {
	drop := make(map[string]bool, len(paths))
	for _, p := range paths {
		drop[p] = true
	}
	out := &Changes{}
	for _, a := range c.Added {
		if !drop["/"+a] {
			out.Added = append(out.Added, a)
		}
	}
	for _, d := range c.Deleted {
		if !drop[d] {
			out.Deleted = append(out.Deleted, d)
		}
	}
	return out
}

// Compare walks root, a container's root filesystem, against base, the
// unmodified root filesystem of its image, without following symlinks.
//
// A path present in both counts as modified when its type, mode, owner,
// size, modification time (to the nanosecond), symlink target or device
// number differ. Contents are not hashed: a file rewritten with the same
// size within the same mtime is missed, as in Podman (and overlayfs sees
// any write anyway, see FromOverlay). Extended attributes, hard link counts
// and ctime are not compared. Directories present in both are never listed
// themselves; a new directory is listed together with all of its content.
// Sockets, fifos and device nodes are listed like files.
func Compare(ctx context.Context, root, base string) (*Changes, error) {
	rfd, err := safefs.OpenDir(root)
	if err != nil {
		return nil, fmt.Errorf("compare: open %s: %w", root, err)
	}
	defer unix.Close(rfd)
	bfd, err := safefs.OpenDir(base)
	if err != nil {
		return nil, fmt.Errorf("compare: open %s: %w", base, err)
	}
	defer unix.Close(bfd)

	c := &Changes{}
	if err := c.compareDir(ctx, rfd, bfd, ""); err != nil {
		return nil, fmt.Errorf("compare %s with %s: %w", root, base, err)
	}
	sort.Strings(c.Deleted)
	return c, nil
}

// compareDir compares the directory rel, open as rfd in root and bfd in
// base.
func (c *Changes) compareDir(ctx context.Context, rfd, bfd int, rel string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rnames, err := safefs.ReadDirNames(rfd)
	if err != nil {
		return fmt.Errorf("read %s: %w", display(rel), err)
	}
	bnames, err := safefs.ReadDirNames(bfd)
	if err != nil {
		return fmt.Errorf("read %s in base: %w", display(rel), err)
	}
	inRoot := make(map[string]bool, len(rnames))
	for _, n := range rnames {
		inRoot[n] = true
	}
	for _, n := range bnames {
		if !inRoot[n] {
			c.Deleted = append(c.Deleted, "/"+join(rel, n))
		}
	}

	for _, n := range rnames {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := join(rel, n)
		var rst, bst unix.Stat_t
		if err := unix.Fstatat(rfd, n, &rst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		err := unix.Fstatat(bfd, n, &bst, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("stat %s in base: %w", p, err)
		}
		inBase := err == nil

		switch {
		case isDir(&rst) && inBase && isDir(&bst):
			if err := c.compareSubdirs(ctx, rfd, bfd, n, p); err != nil {
				return err
			}
		case isDir(&rst):
			// New, or replacing a non-directory: tar recreates it whole.
			c.Added = append(c.Added, p)
			if err := c.addTree(ctx, rfd, n, p); err != nil {
				return err
			}
		case !inBase:
			c.Added = append(c.Added, p)
		default:
			// A non-directory over a directory differs in type; applying
			// it removes the image's directory tree.
			changed, err := differs(rfd, bfd, n, &rst, &bst)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if changed {
				c.Added = append(c.Added, p)
			}
		}
	}
	return nil
}

func (c *Changes) compareSubdirs(ctx context.Context, rfd, bfd int, name, p string) error {
	rsub, err := safefs.OpenSubdir(rfd, name)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(rsub)
	bsub, err := safefs.OpenSubdir(bfd, name)
	if err != nil {
		return fmt.Errorf("open %s in base: %w", p, err)
	}
	defer unix.Close(bsub)
	return c.compareDir(ctx, rsub, bsub, p)
}

// addTree lists everything below the new directory name (inside dirfd,
// path p) as added, each directory before its content.
func (c *Changes) addTree(ctx context.Context, dirfd int, name, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fd, err := safefs.OpenSubdir(dirfd, name)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	names, err := safefs.ReadDirNames(fd)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	for _, n := range names {
		cp := join(p, n)
		c.Added = append(c.Added, cp)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat %s: %w", cp, err)
		}
		if isDir(&st) {
			if err := c.addTree(ctx, fd, n, cp); err != nil {
				return err
			}
		}
	}
	return nil
}

// differs reports whether name, a non-directory in root (rst), was modified
// relative to the same name in base (bst).
func differs(rfd, bfd int, name string, rst, bst *unix.Stat_t) (bool, error) {
	if rst.Mode != bst.Mode || rst.Uid != bst.Uid || rst.Gid != bst.Gid ||
		rst.Size != bst.Size || rst.Mtim != bst.Mtim {
		return true, nil
	}
	switch rst.Mode & unix.S_IFMT {
	case unix.S_IFCHR, unix.S_IFBLK:
		return rst.Rdev != bst.Rdev, nil
	case unix.S_IFLNK:
		rt, err := safefs.ReadlinkAt(rfd, name)
		if err != nil {
			return false, err
		}
		bt, err := safefs.ReadlinkAt(bfd, name)
		if err != nil {
			return false, fmt.Errorf("in base: %w", err)
		}
		return rt != bt, nil
	}
	return false, nil
}

// display shows a relative path in messages, the root as ".".
func display(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}
