package dump

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/crtool/crtool/internal/podman"
	"github.com/crtool/crtool/internal/rootfs"
)

// rootfsChanges writes rootfs-diff.tar and deleted.files into the staging
// directory when the container's changes to its image can be computed:
// from the overlay's upper directory when its root is an overlay (Podman's
// containers), else against --rootfs-base, else against --image mounted
// from Podman's store. The container is frozen meanwhile, so the changes
// match its memory exactly.
func (d *dumper) rootfsChanges(ctx context.Context) error {
	var changes *rootfs.Changes
	var err error
	root := d.mounts.root
	switch {
	case root.FSType == "overlay" && overlayOpt(root.VFSOptions, "upperdir") != "":
		upper := overlayOpt(root.VFSOptions, "upperdir")
		changes, err = rootfs.FromOverlay(ctx, upper, overlayLowers(root.VFSOptions, upper))
	case d.opts.RootfsBase != "":
		changes, err = rootfs.Compare(ctx, d.c.root, d.opts.RootfsBase)
	case d.image.Name != "" && d.image.podman:
		base, unmount, merr := mountImage(ctx, d.image.Name)
		if merr != nil {
			d.opts.logf("no root filesystem diff: %v", merr)
			return nil
		}
		defer unmount()
		changes, err = rootfs.Compare(ctx, d.c.root, base)
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("root filesystem changes: %w", err)
	}
	// Like Podman, leave out what the runtime puts there (mount points of
	// /proc, /sys, /etc/hosts, ...).
	changes = changes.Without(rootfs.RuntimePaths...)
	diff, deleted, err := rootfs.WriteDiff(ctx, d.wd.Path, d.c.root, changes)
	if err != nil {
		return err
	}
	d.rootFromImage = true
	d.opts.logf("root filesystem changes: %d added or modified, %d deleted (diff %v, deleted.files %v)", len(changes.Added), len(changes.Deleted), diff, deleted)
	return nil
}

// overlayOpt reads one option of an overlay mount's super options.
func overlayOpt(opts, key string) string {
	for _, o := range strings.Split(opts, ",") {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return v
		}
	}
	return ""
}

// overlayLowers lists an overlay mount's lower directories, top first.
// Podman's storage mounts with relative lower paths ("l/ABC...") after
// changing into its overlay directory, the parent of each layer directory
// holding the upper "diff".
func overlayLowers(opts, upper string) []string {
	base := filepath.Dir(filepath.Dir(upper))
	var out []string
	for _, l := range strings.Split(overlayOpt(opts, "lowerdir"), ":") {
		if l == "" {
			continue
		}
		if !filepath.IsAbs(l) {
			l = filepath.Join(base, l)
		}
		out = append(out, l)
	}
	return out
}

// mountImage mounts an image of Podman's store and returns its root
// filesystem.
func mountImage(ctx context.Context, name string) (string, func(), error) {
	dir, err := podman.MountImage(ctx, name)
	if err != nil {
		return "", nil, err
	}
	return dir, func() { _ = podman.UnmountImage(name) }, nil
}
