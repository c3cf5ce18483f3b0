package restore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/podman"
	"github.com/crtool/crtool/internal/rootfs"
)

// foreign is an archive written by Podman, CRI-O or the kubelet being
// restored: what the archive says of it, and the state directory this
// restore created for it.
type foreign struct {
	*podman.Checkpoint
	dir *containerDir
	// allowDevices lets rootfs-diff.tar create device nodes.
	allowDevices bool
}

// mountOverlay mounts the overlay over lower (the image's root
// filesystem) that the container runs on, with its own /dev/shm beside.
func (f *foreign) mountOverlay(lower string) (string, error) {
	if err := f.makeDirs(); err != nil {
		return "", err
	}
	return f.dir.mountOverlay(lower, f.RootMode)
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
	if err := rootfs.Apply(ctx, root, member(stage, format.RootfsDiffTar), member(stage, format.DeletedFilesFile), rootfs.Limits{AllowDevices: f.allowDevices}); err != nil {
		return fmt.Errorf("apply the archive's root filesystem changes: %w", err)
	}
	if err := f.writeUserdata(ctx, stage); err != nil {
		return err
	}
	return f.mountTargets(root)
}

// mountTargets creates, in the overlay, the mount points that the image
// lacks.
func (f *foreign) mountTargets(root string) error {
	return makeMountTargets(root, f.Targets)
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
