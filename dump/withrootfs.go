package dump

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/rootfs"
)

// wholeRootfs writes the container's entire root filesystem into the
// staging directory as format.RootfsTar, in rootfs-diff.tar's format
// (everything counts as added to an empty image), so a restore needs
// neither the image nor --root. The container is frozen meanwhile.
func (d *dumper) wholeRootfs(ctx context.Context) error {
	tmp, err := os.MkdirTemp(d.wd.Path, ".rootfs-")
	if err != nil {
		return fmt.Errorf("--with-rootfs: %w", err)
	}
	// The staging directory becomes the archive: nothing else may stay.
	defer os.RemoveAll(tmp)
	empty := filepath.Join(tmp, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		return fmt.Errorf("--with-rootfs: %w", err)
	}
	changes, err := rootfs.Compare(ctx, d.c.root, empty)
	if err != nil {
		return fmt.Errorf("--with-rootfs: %w", err)
	}
	if _, _, err := rootfs.WriteDiff(ctx, tmp, d.c.root, changes); err != nil {
		return fmt.Errorf("--with-rootfs: %w", err)
	}
	if err := os.Rename(filepath.Join(tmp, format.RootfsDiffTar), filepath.Join(d.wd.Path, format.RootfsTar)); err != nil {
		return fmt.Errorf("--with-rootfs: %w", err)
	}
	d.opts.logf("root filesystem in the archive: %d entries", len(changes.Added))
	return nil
}
