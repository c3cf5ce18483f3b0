package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/criuimg"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/guardian"
	"github.com/crtool/crtool/internal/podman"
	"github.com/crtool/crtool/internal/rootfs"
)

// prepareRoot finds the root filesystem to restore into. An archive that
// carries the whole root filesystem (rootfs.tar) has it unpacked under the
// container's state directory, unless --root is given. When the archive
// records the container's root as an image plus changes (Podman's
// containers, archives Podman wrote) and that root is gone, it is rebuilt:
// an overlay under the container's state directory whose lower layer is
// --root, or else the recorded image mounted from this host's Podman
// storage, with the archive's rootfs-diff.tar and deleted.files applied.
// Otherwise the root is --root or the recorded path, used as it is.
func (r *restorer) prepareRoot(ctx context.Context) error {
	c := r.md.Container
	if r.fg == nil {
		switch {
		case r.opts.Root == "" && member(r.wd.Path, format.RootfsTar) != "":
			return r.unpackRoot(ctx)
		case !c.RootFromImage:
			// checkHost made sure it is there.
			r.root = cmp.Or(r.opts.Root, c.Root)
			return nil
		case r.opts.Root == "" && isDir(c.Root):
			// The container's own root, its changes included, is still
			// mounted.
			r.root = c.Root
			return nil
		}
	}
	if r.fg != nil {
		r.dir = r.fg.dir
	}
	if err := r.stateDir(); err != nil {
		return err
	}
	lower, err := r.imageRoot(ctx)
	if err != nil {
		return err
	}
	if r.fg != nil {
		r.root, err = r.fg.mountOverlay(lower)
	} else {
		var mode uint32
		if mode, err = criuimg.New(criuimg.Dir(r.wd.Images), format.CheckpointDir+"/").RootMode(); err != nil {
			return err
		}
		r.root, err = r.dir.mountOverlay(lower, mode)
	}
	if err != nil {
		return err
	}
	// The overlay goes before the image under it is released.
	if err := r.rollback.PushRecord("unmount "+r.root, guardian.Unmount(r.root), r.dir.unmountOverlay); err != nil {
		return err
	}
	if r.fg != nil {
		return r.fg.fill(ctx, r.wd.Path, r.root)
	}
	r.builtRoot = true
	if err := rootfs.Apply(ctx, r.root, member(r.wd.Path, format.RootfsDiffTar), member(r.wd.Path, format.DeletedFilesFile), rootfs.Limits{AllowDevices: r.opts.AllowDevices}); err != nil {
		return fmt.Errorf("apply the archive's root filesystem changes: %w", err)
	}
	return nil
}

// unpackRoot unpacks the root filesystem the archive carries (dump
// --with-rootfs) into the container's state directory.
func (r *restorer) unpackRoot(ctx context.Context) error {
	if err := r.stateDir(); err != nil {
		return err
	}
	mode, err := criuimg.New(criuimg.Dir(r.wd.Images), format.CheckpointDir+"/").RootMode()
	if err != nil {
		return err
	}
	root := filepath.Join(r.dir.path, "rootfs")
	if err := os.Mkdir(root, 0o700); err != nil {
		return err
	}
	// CRIU checks the root directory's mode.
	if err := unix.Chmod(root, mode&0o7777); err != nil {
		return fmt.Errorf("chmod %s: %w", root, err)
	}
	if err := rootfs.Apply(ctx, root, member(r.wd.Path, format.RootfsTar), "", rootfs.Limits{AllowDevices: r.opts.AllowDevices}); err != nil {
		return fmt.Errorf("unpack the archive's root filesystem: %w", err)
	}
	r.root, r.builtRoot = root, true
	r.opts.logf("root filesystem unpacked from %s into %s", format.RootfsTar, root)
	return nil
}

// imageRoot is the lower layer of the overlay: --root, or the recorded
// image mounted from Podman's storage (released with the state directory).
func (r *restorer) imageRoot(ctx context.Context) (string, error) {
	if r.opts.Root != "" {
		return r.opts.Root, nil
	}
	image, err := r.findImage(ctx)
	if err != nil {
		return "", err
	}
	c := r.md.Container
	dir, err := podman.MountImage(ctx, image)
	if err != nil {
		return "", err
	}
	if err := r.rollback.PushRecord("release image "+image, guardian.UnmountImage(image), func() error { return podman.UnmountImage(image) }); err != nil {
		return "", err
	}
	r.images = append(r.images, image)
	// The note lets the container's removal release the image.
	if err := os.WriteFile(filepath.Join(r.dir.path, ImageMountFile), []byte(image+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("record the image mount: %w", err)
	}
	r.opts.logf("mounted image %s at %s", cmp.Or(c.Image, c.ImageID), dir)
	return dir, nil
}

// findImage names the recorded image in this host's Podman storage, or
// says what to do when it is not there.
func (r *restorer) findImage(ctx context.Context) (string, error) {
	c := r.md.Container
	image := cmp.Or(c.ImageID, c.Image)
	what := "the archive was not written by crtool"
	if r.fg == nil {
		what = fmt.Sprintf("root filesystem %s recorded in the archive is not there", c.Root)
	}
	if image == "" {
		return "", errdefs.Hint(errdefs.Newf(errdefs.ErrNotFound, "%s and it names no image", what), "pass ", "Root", " DIR, the root filesystem of the container's image (it stays unmodified: the container runs on an overlay of it)")
	}
	name := cmp.Or(c.Image, c.ImageID)
	ok, err := podman.ImageExists(ctx, image)
	switch {
	case errors.Is(err, podman.ErrNoPodman):
		return "", errdefs.Hint(errdefs.Newf(errdefs.ErrNotFound, "%s, and Podman, which could provide its image %s, is not installed", what, name), "pass ", "Root", " DIR, the image's root filesystem")
	case !ok:
		return "", errdefs.Hint(errdefs.Newf(errdefs.ErrNotFound, "%s and its image %s is not in this host's Podman storage", what, name), "run podman pull "+name+", or pass ", "Root", " DIR, the image's root filesystem")
	}
	return image, nil
}

// member is the path of an archive member in the unpacked archive, or ""
// when the archive lacks it.
func member(stage, name string) string {
	p := filepath.Join(stage, name)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return ""
	}
	return p
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
