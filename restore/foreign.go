package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/podman"
	"github.com/crtool/crtool/internal/rootfs"
	"github.com/crtool/crtool/internal/safefs"
)

// StateDir holds what crtool creates on the host for containers restored
// from archives it did not write: the overlay over --root and the files
// that replace the writer's host paths.
var StateDir = "/var/lib/crtool/containers"

// foreign is an archive written by Podman, CRI-O or the kubelet being
// restored: what the archive says of it, and the state directory this
// restore created for it.
type foreign struct {
	*podman.Checkpoint
	created bool
	// allowDevices lets rootfs-diff.tar create device nodes.
	allowDevices bool
}

// mountOverlay mounts the root filesystem to restore into: an overlay
// whose lower layer is lower (the image's root filesystem, never modified)
// and whose root directory has the mode CRIU recorded, which it checks.
func (f *foreign) mountOverlay(lower string) (string, error) {
	if err := f.makeDirs(); err != nil {
		return "", err
	}
	// The overlay's root directory takes its mode and owner from the upper
	// directory.
	var st unix.Stat_t
	if err := unix.Stat(lower, &st); err != nil {
		return "", fmt.Errorf("root filesystem %s: %w", lower, err)
	}
	upper := filepath.Join(f.Dir, "upper")
	mode := f.RootMode & 0o7777
	if mode == 0 {
		mode = st.Mode & 0o7777
	}
	if err := unix.Chmod(upper, mode); err != nil {
		return "", fmt.Errorf("chmod %s: %w", upper, err)
	}
	if err := os.Chown(upper, int(st.Uid), int(st.Gid)); err != nil {
		return "", err
	}
	merged := filepath.Join(f.Dir, "merged")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, filepath.Join(f.Dir, "work"))
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount an overlay over %s: %w", lower, err)
	}
	return merged, nil
}

// makeDirs lays out the state directory: the overlay's directories and
// userdata, where the files that replace Podman's go.
func (f *foreign) makeDirs() error {
	for _, d := range []string{"upper", "work", "merged", "userdata/shm"} {
		if err := os.MkdirAll(filepath.Join(f.Dir, d), 0o700); err != nil {
			return fmt.Errorf("create %s: %w", f.Dir, err)
		}
	}
	return nil
}

// fill gives root what the container had besides its image: the
// archive's rootfs-diff.tar and deleted.files, so the container finds the
// files it wrote before the dump, the files that replace Podman's
// per-container ones, and the mount points.
func (f *foreign) fill(ctx context.Context, stage, root string) error {
	diff, deleted := filepath.Join(stage, format.RootfsDiffTar), filepath.Join(stage, format.DeletedFilesFile)
	if _, err := os.Stat(diff); err != nil {
		diff = ""
	}
	if _, err := os.Stat(deleted); err != nil {
		deleted = ""
	}
	if err := rootfs.Apply(ctx, root, diff, deleted, rootfs.Limits{AllowDevices: f.allowDevices}); err != nil {
		return fmt.Errorf("apply the archive's root filesystem changes: %w", err)
	}
	if err := f.writeUserdata(ctx, stage); err != nil {
		return err
	}
	return f.mountTargets(root)
}

// mountTargets creates, in the overlay, the mount points that the image
// lacks: the writer's runtime made them (runc does for /proc, /sys,
// /etc/hostname...), and CRIU only mounts onto existing paths. Paths are
// resolved inside the root, never through a symlink out of it.
func (f *foreign) mountTargets(root string) error {
	rootDir, err := os.Open(root)
	if err != nil {
		return err
	}
	defer rootDir.Close()
	for mp, source := range f.Targets {
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

// create makes the container's state directory, which must not exist yet.
func (f *foreign) create() error {
	if err := os.MkdirAll(filepath.Dir(f.Dir), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(f.Dir), err)
	}
	if err := os.Mkdir(f.Dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return errdefs.Hint(errdefs.Newf(errdefs.ErrConflict, "%s exists: a container named %s was restored here before", f.Dir, f.Metadata.Container.Name), "pass ", "Name", " or remove it")
		}
		return fmt.Errorf("create %s: %w", f.Dir, err)
	}
	f.created = true
	return nil
}

// writeUserdata writes the files that replace Podman's per-container files.
func (f *foreign) writeUserdata(ctx context.Context, stage string) error {
	md := f.Metadata
	ud := filepath.Join(f.Dir, "userdata")
	hostname := f.Spec.Hostname
	if hostname == "" {
		hostname = md.Container.Name
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
	if md.Network != nil {
		for _, a := range md.Network.Addrs {
			if ip, _, ok := strings.Cut(a.CIDR, "/"); ok && !a.Auto && a.Link != "lo" {
				hosts += ip + "\t" + hostname + "\n"
			}
		}
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = nil
	}
	for name, content := range map[string][]byte{
		"hosts":         []byte(hosts),
		"hostname":      []byte(hostname + "\n"),
		"resolv.conf":   resolv,
		".containerenv": nil,
	} {
		if err := os.WriteFile(filepath.Join(ud, name), content, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	shmDir := filepath.Join(ud, "shm")
	if err := os.MkdirAll(shmDir, 0o700); err != nil {
		return err
	}
	// os.FileMode spells the sticky bit ModeSticky: 0o1777 would drop it.
	if err := os.Chmod(shmDir, 0o777|os.ModeSticky); err != nil {
		return err
	}
	if shm, err := os.Open(filepath.Join(stage, format.DevShmCheckpointTar)); err == nil {
		defer shm.Close()
		if _, err := archive.Extract(ctx, shm, filepath.Join(ud, "shm"), archive.ExtractOptions{}); err != nil {
			return fmt.Errorf("%s: %w", format.DevShmCheckpointTar, err)
		}
	}
	return nil
}

// remove undoes create and mountOverlay; a state directory this restore
// did not create is another container's and stays.
func (f *foreign) remove() error {
	if !f.created {
		return nil
	}
	merged := filepath.Join(f.Dir, "merged")
	if err := unix.Unmount(merged, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", merged, err)
		}
	}
	// The overlay's upper directory holds rootfs-diff.tar's tree, which
	// may nest deeper than os.RemoveAll can go.
	if err := safefs.RemoveTree(context.Background(), f.Dir); err != nil {
		return fmt.Errorf("remove %s: %w", f.Dir, err)
	}
	return nil
}
