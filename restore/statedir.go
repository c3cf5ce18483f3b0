package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/guardian"
	"github.com/crtool/crtool/internal/network"
	"github.com/crtool/crtool/internal/safefs"
)

// StateDir holds what crtool creates on the host for a container it
// restores when the archive's host paths are gone: the overlay the root
// filesystem is rebuilt on, the container's private files (its /etc/hosts,
// /dev/shm...) and a note of the Podman image mounted for it.
var StateDir = "/var/lib/crtool/containers"

// ImageMountFile, in a container's state directory, names the Podman image
// that restore mounted as the lower layer of the container's overlay: the
// container's removal releases it with podman image unmount.
const ImageMountFile = "podman-image"

// containerDir is the state directory of one restored container,
// StateDir/NAME, and what this restore made in it.
type containerDir struct {
	path    string
	created bool
}

// create makes the state directory, which must not exist yet: only a
// directory this restore created may be removed on failure, another
// container may own one of the same name.
func (d *containerDir) create(name string) error {
	if d.created {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(d.path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(d.path), err)
	}
	if err := os.Mkdir(d.path, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return errdefs.Hint(errdefs.Newf(errdefs.ErrConflict, "%s exists: a container named %s was restored here before", d.path, name), "pass ", "Name", " or remove it")
		}
		return fmt.Errorf("create %s: %w", d.path, err)
	}
	d.created = true
	return nil
}

// mountOverlay mounts the root filesystem to restore into: an overlay
// whose lower layer is lower (the image's root filesystem, never modified)
// and whose root directory has rootMode, the mode CRIU recorded and checks
// (0: lower's).
func (d *containerDir) mountOverlay(lower string, rootMode uint32) (string, error) {
	for _, sub := range []string{"upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(d.path, sub), 0o700); err != nil {
			return "", fmt.Errorf("create %s: %w", d.path, err)
		}
	}
	// The overlay's root directory takes its mode and owner from the upper
	// directory.
	var st unix.Stat_t
	if err := unix.Stat(lower, &st); err != nil {
		return "", fmt.Errorf("root filesystem %s: %w", lower, err)
	}
	upper := filepath.Join(d.path, "upper")
	mode := rootMode & 0o7777
	if mode == 0 {
		mode = st.Mode & 0o7777
	}
	if err := unix.Chmod(upper, mode); err != nil {
		return "", fmt.Errorf("chmod %s: %w", upper, err)
	}
	if err := os.Chown(upper, int(st.Uid), int(st.Gid)); err != nil {
		return "", err
	}
	merged := filepath.Join(d.path, "merged")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, filepath.Join(d.path, "work"))
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount an overlay over %s: %w", lower, err)
	}
	return merged, nil
}

// unmountOverlay detaches the overlay mountOverlay made.
func (d *containerDir) unmountOverlay() error {
	merged := filepath.Join(d.path, "merged")
	if err := unix.Unmount(merged, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", merged, err)
		}
	}
	return nil
}

// remove undoes create (and mountOverlay, if that is still mounted); a
// state directory this restore did not create is another container's and
// stays.
func (d *containerDir) remove() error {
	if !d.created {
		return nil
	}
	if err := d.unmountOverlay(); err != nil {
		return err
	}
	// The overlay's upper directory holds rootfs-diff.tar's tree, which
	// may nest deeper than os.RemoveAll can go.
	if err := safefs.RemoveTree(context.Background(), d.path); err != nil {
		return fmt.Errorf("remove %s: %w", d.path, err)
	}
	return nil
}

// stateDir creates the container's state directory, once, and has the
// rollback (and the guardian, should crtool die) remove it.
func (r *restorer) stateDir() error {
	if r.dir == nil {
		r.dir = &containerDir{path: filepath.Join(StateDir, r.name)}
	}
	if r.dir.created {
		return nil
	}
	if err := r.dir.create(r.name); err != nil {
		return err
	}
	return r.rollback.PushRecord("remove "+r.dir.path, guardian.Remove(r.dir.path), r.dir.remove)
}

// makeMountTargets creates, in root, the mount points that it lacks: the
// dumped container's runtime made them (runc does for /proc, /sys,
// /etc/hostname...), and CRIU only mounts onto existing paths. targets maps
// each mount point to its source on this host ("" when unknown: a
// directory is made). Paths are resolved inside the root, never through a
// symlink out of it.
func makeMountTargets(root string, targets map[string]string) error {
	rootDir, err := os.Open(root)
	if err != nil {
		return err
	}
	defer rootDir.Close()
	for mp, source := range targets {
		if mp == "" || mp == "/" {
			continue
		}
		if h, err := securejoin.OpenInRoot(root, mp); err == nil {
			h.Close()
			continue
		}
		dir := true
		if st, err := os.Stat(source); err == nil && !st.IsDir() {
			dir = false
		}
		if dir {
			h, err := securejoin.MkdirAllHandle(rootDir, mp, 0o755)
			if err != nil {
				return fmt.Errorf("create mount point %s: %w", mp, err)
			}
			h.Close()
			continue
		}
		parent, err := securejoin.MkdirAllHandle(rootDir, path.Dir(mp), 0o755)
		if err != nil {
			return fmt.Errorf("create mount point %s: %w", mp, err)
		}
		fd, err := unix.Openat(int(parent.Fd()), path.Base(mp), unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		parent.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create mount point %s: %w", mp, err)
		}
		if err == nil {
			unix.Close(fd)
		}
	}
	return nil
}

// placed is what a restore puts on the host for the container besides
// what CRIU makes: its state directory with a root filesystem it built,
// and its published ports.
type placed struct {
	// dir is the container's state directory, once the restore needs one.
	dir *containerDir
	// builtRoot: the restore made the root filesystem (an overlay, or the
	// archive's rootfs.tar unpacked), which then needs the mount points
	// the dumped container's runtime had made.
	builtRoot bool
	publish   []format.PortMapping
	ports     *network.Ports
	// images are the Podman images mounted for the overlay.
	images []string
}
