package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/safefs"
)

// overlayfs keeps its metadata in xattrs of the "trusted.overlay." prefix,
// or "user.overlay." for mounts with userxattr (rootless).
var overlayPrefixes = []string{"trusted.overlay.", "user.overlay."}

// FromOverlay reads the changes of a container whose root filesystem is an
// overlayfs mount from its upper directory, which holds exactly what the
// container changed. lowers are the mount's lower directories, top first as
// in the lowerdir= option; together they are the image's root filesystem.
//
// Whiteouts in upper (character devices 0:0, or empty files with an
// overlay.whiteout xattr) become Deleted. Everything else in upper is
// Added, except directories that also exist in the lower layers: overlayfs
// copies those up when something below them changes, and like Compare
// FromOverlay does not list them.
//
// An opaque directory (overlay.opaque "y", left by `rm -rf d; mkdir d`)
// hides the lower directory's whole content. Podman's restore removes the
// deleted paths after untarring, so listing the directory itself in Deleted
// would remove what the tar just wrote. Instead, the lower entries that the
// opaque directory hides and upper does not replace are listed in Deleted
// one by one (recursively where upper and lower both hold a directory of
// the same name), and the opaque directory's content is listed in Added as
// if it were new (the directory itself, which the image has, is not). This
// is why FromOverlay needs lowers; it merges them as overlayfs does,
// honouring their own whiteouts and opaque directories.
//
// WriteDiff can then read the files from upper (or from the mounted merged
// directory). Upper directories with overlay.redirect (redirect_dir, a
// renamed lower directory) and files with overlay.metacopy (metadata-only
// copy-up, content still in a lower layer) are reported as errdefs.ErrUnsupported:
// their content is not in upper.
func FromOverlay(ctx context.Context, upper string, lowers []string) (*Changes, error) {
	// A lower that is missing (a relative lowerdir taken from mountinfo,
	// say) would silently look empty and turn every copied-up directory
	// into an added one.
	for _, l := range lowers {
		fi, err := os.Stat(l)
		if err != nil {
			return nil, fmt.Errorf("read overlay: lower: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("read overlay: lower %s is not a directory", l)
		}
	}
	fd, err := safefs.OpenDir(upper)
	if err != nil {
		return nil, fmt.Errorf("read overlay: open %s: %w", upper, err)
	}
	defer unix.Close(fd)
	o := &overlayReader{lowers: lowers, c: &Changes{}}
	if err := o.walk(ctx, fd, "", false); err != nil {
		return nil, fmt.Errorf("read overlay upper %s: %w", upper, err)
	}
	sort.Strings(o.c.Deleted)
	return o.c, nil
}

type overlayReader struct {
	lowers []string
	c      *Changes
}

// walk reads the upper directory rel, open as fd. hidden means that the
// lower layers' content of rel is hidden (rel or one of its parents is
// opaque, or new), so upper's content replaces it.
func (o *overlayReader) walk(ctx context.Context, fd int, rel string, hidden bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := safefs.ReadDirNames(fd)
	if err != nil {
		return fmt.Errorf("read %s: %w", display(rel), err)
	}
	if hidden {
		if err := o.deleteHidden(rel, names); err != nil {
			return err
		}
	}
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := join(rel, n)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		wo, err := isWhiteout(&st, func(attr string) (bool, error) {
			_, ok, err := lgetxattrAt(fd, n, attr)
			return ok, err
		})
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if wo {
			o.c.Deleted = append(o.c.Deleted, "/"+p)
			continue
		}
		if err := checkSupported(fd, n, p, &st); err != nil {
			return err
		}
		if !isDir(&st) {
			o.c.Added = append(o.c.Added, p)
			continue
		}

		opaque, err := overlayXattrIs(func(attr string) ([]byte, bool, error) { return lgetxattrAt(fd, n, attr) }, "opaque", "y")
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		// A directory the image has too was copied up (not listed) or,
		// when opaque, emptied and recreated: then its hidden lower
		// content is deleted. Any other directory (new, replacing an image
		// file, or inside a hidden tree) is listed with all its content.
		inImage := false
		if !hidden {
			kind, _, err := o.lookup(p)
			if err != nil {
				return err
			}
			inImage = kind == lowerDir
		}
		childHidden := true
		if inImage {
			childHidden = opaque
		} else {
			o.c.Added = append(o.c.Added, p)
		}
		sub, err := safefs.OpenSubdir(fd, n)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		err = o.walk(ctx, sub, p, childHidden)
		unix.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

// deleteHidden lists as deleted the entries that the lower layers show in
// the directory rel and that upper, whose directory rel holds upperNames,
// does not replace. An entry both replace with a directory is handled when
// walk descends into it.
func (o *overlayReader) deleteHidden(rel string, upperNames []string) error {
	lower, err := o.lowerNames(rel)
	if err != nil {
		return err
	}
	inUpper := make(map[string]bool, len(upperNames))
	for _, n := range upperNames {
		inUpper[n] = true
	}
	for _, n := range lower {
		if !inUpper[n] {
			o.c.Deleted = append(o.c.Deleted, "/"+join(rel, n))
		}
	}
	return nil
}

// checkSupported refuses overlayfs features whose content is not in upper.
func checkSupported(fd int, name, p string, st *unix.Stat_t) error {
	var attr, feature string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		attr, feature = "redirect", "redirect_dir"
	case unix.S_IFREG:
		attr, feature = "metacopy", "metacopy"
	default:
		return nil
	}
	for _, pre := range overlayPrefixes {
		_, ok, err := lgetxattrAt(fd, name, pre+attr)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if ok {
			return fmt.Errorf("%s: %w: has %s, its content is not in upper (mount with %s=off)", p, errdefs.ErrUnsupported, pre+attr, feature)
		}
	}
	return nil
}

// isWhiteout reports whether st (with its xattrs read by has) is an
// overlayfs whiteout: a character device 0:0, or an empty regular file with
// an overlay.whiteout xattr (Linux 6.7's xwhiteouts, used in image layers).
func isWhiteout(st *unix.Stat_t, has func(attr string) (bool, error)) (bool, error) {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return st.Rdev == 0, nil
	case unix.S_IFREG:
		if st.Size != 0 {
			return false, nil
		}
		for _, pre := range overlayPrefixes {
			ok, err := has(pre + "whiteout")
			if err != nil || ok {
				return ok, err
			}
		}
	}
	return false, nil
}

// overlayXattrIs reports whether the overlay xattr attr (without prefix)
// has the value want under either prefix. Only "y" makes a directory
// opaque; "x" marks one holding xwhiteouts.
func overlayXattrIs(get func(attr string) ([]byte, bool, error), attr, want string) (bool, error) {
	for _, pre := range overlayPrefixes {
		v, ok, err := get(pre + attr)
		if err != nil {
			return false, err
		}
		if ok && string(v) == want {
			return true, nil
		}
	}
	return false, nil
}

type lowerKind int

const (
	lowerNone lowerKind = iota
	lowerDir
	lowerOther
)

// lookup finds what the lower layers, merged as overlayfs merges them, show
// at rel, and for a directory which layers contribute to it, top first.
// Lower layers are the image's, owned by the host; a component that is a
// symlink in a layer ends the lookup there like any non-directory.
func (o *overlayReader) lookup(rel string) (lowerKind, []string, error) {
	layers := o.lowers
	if rel == "" {
		return lowerDir, layers, nil
	}
	comps := strings.Split(rel, "/")
	for i := range comps {
		prefix := filepath.Join(comps[:i+1]...)
		var next []string
		kind := lowerNone
		for _, l := range layers {
			full := filepath.Join(l, prefix)
			var st unix.Stat_t
			err := unix.Lstat(full, &st)
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				continue
			}
			if err != nil {
				return lowerNone, nil, fmt.Errorf("lower %s: %w", full, err)
			}
			wo, err := isWhiteout(&st, func(attr string) (bool, error) {
				_, ok, err := lgetxattr(full, attr)
				return ok, err
			})
			if err != nil {
				return lowerNone, nil, fmt.Errorf("lower %s: %w", full, err)
			}
			if wo {
				break
			}
			if !isDir(&st) {
				if len(next) == 0 {
					kind = lowerOther
				}
				break
			}
			next = append(next, l)
			opaque, err := overlayXattrIs(func(attr string) ([]byte, bool, error) { return lgetxattr(full, attr) }, "opaque", "y")
			if err != nil {
				return lowerNone, nil, fmt.Errorf("lower %s: %w", full, err)
			}
			if opaque {
				break
			}
		}
		if len(next) == 0 {
			if i == len(comps)-1 {
				return kind, nil, nil
			}
			return lowerNone, nil, nil
		}
		layers = next
	}
	return lowerDir, layers, nil
}

// lowerNames lists the entries the lower layers show in the directory rel.
func (o *overlayReader) lowerNames(rel string) ([]string, error) {
	kind, layers, err := o.lookup(rel)
	if err != nil || kind != lowerDir {
		return nil, err
	}
	seen := make(map[string]bool)
	var names []string
	for _, l := range layers {
		dir := filepath.Join(l, rel)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("lower %s: %w", dir, err)
		}
		for _, e := range ents {
			n := e.Name()
			if seen[n] {
				continue
			}
			seen[n] = true
			full := filepath.Join(dir, n)
			var st unix.Stat_t
			if err := unix.Lstat(full, &st); err != nil {
				return nil, fmt.Errorf("lower %s: %w", full, err)
			}
			wo, err := isWhiteout(&st, func(attr string) (bool, error) {
				_, ok, err := lgetxattr(full, attr)
				return ok, err
			})
			if err != nil {
				return nil, fmt.Errorf("lower %s: %w", full, err)
			}
			if !wo {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}
