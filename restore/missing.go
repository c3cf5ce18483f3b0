package restore

import (
	"cmp"
	"context"
	"path"
	"path/filepath"
	"strings"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
)

// rootProblem says why no root filesystem can be found, nil when one can.
func (r *restorer) rootProblem(ctx context.Context) error {
	c := r.md.Container
	switch {
	case r.fg == nil && r.opts.Root == "" && member(r.wd.Path, format.RootfsTar) != "":
		return nil
	case r.fg == nil && !c.RootFromImage:
		root := r.opts.Root
		if root == "" {
			root = c.Root
		}
		if !isDir(root) {
			return errdefs.Hint(errdefs.Newf(errdefs.ErrNotFound, "root filesystem %s recorded in the archive is not there", root), "pass ", "Root", " DIR, the container's root filesystem")
		}
		return nil
	case r.opts.Root != "", r.fg == nil && isDir(c.Root):
		return nil
	}
	_, err := r.findImage(ctx)
	return err
}

// missingVolumes lists the bind mounts whose host source is gone: volumes,
// which restore binds from their recorded path. The private mounts come
// from the archive, and so do the files that replace a foreign archive's.
func (r *restorer) missingVolumes() []error {
	var errs []error
	for _, m := range r.md.Mounts {
		if m.Kind != format.MountBind || m.Content != "" || (r.fg != nil && strings.HasPrefix(m.Source, r.fg.Dir+"/")) {
			continue
		}
		if !exists(m.Source) {
			errs = append(errs, errdefs.Newf(errdefs.ErrNotFound, "volume %s of the container comes from %s, which does not exist on this host: create it (or restore where it exists)", m.Key, m.Source))
		}
	}
	return errs
}

// mapVolumes binds each volume named with --volume from its new source.
func (r *restorer) mapVolumes() error {
	for dest, src := range r.opts.Volumes {
		found := false
		var volumes []string
		for i := range r.md.Mounts {
			m := &r.md.Mounts[i]
			if m.Kind != format.MountBind || m.Content != "" && !m.Exported {
				continue
			}
			volumes = append(volumes, m.Key)
			if path.Clean(m.Key) == path.Clean(dest) {
				m.Source, found = src, true
			}
		}
		if !found {
			return errdefs.Hint(errdefs.Newf(errdefs.ErrUsage, "the container has no volume at %s (its volumes: %s)", dest, strings.Join(volumes, ", ")), "fix ", "Volume", "")
		}
	}
	return nil
}

// stateDirPlan names the state directory the restore will make, and
// what for ("" when it needs none).
func (r *restorer) stateDirPlan() (dir, what string) {
	c := r.md.Container
	dir = filepath.Join(StateDir, r.name)
	switch {
	case r.fg != nil:
		root := cmp.Or(r.opts.Root, "the image "+cmp.Or(c.Image, c.ImageID))
		return r.fg.Dir, "an overlay over " + root
	case r.opts.Root == "" && member(r.wd.Path, format.RootfsTar) != "":
		return dir, "the archive's root filesystem"
	case c.RootFromImage && (r.opts.Root != "" || !isDir(c.Root)):
		return dir, "an overlay over " + cmp.Or(r.opts.Root, "the image "+cmp.Or(c.Image, c.ImageID))
	}
	for _, m := range r.md.Mounts {
		if m.Content != "" && !(m.Exported && exists(m.Source)) {
			return dir, "the container's private mounts"
		}
	}
	return "", ""
}
