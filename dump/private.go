package dump

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/crtool/crtool/format"
)

// PrivateDirs are the state directories where container engines keep the
// files they generate for one container and bind-mount into it (Podman's
// and CRI-O's userdata with hosts, hostname, resolv.conf, .containerenv,
// secrets and the /dev/shm tmpfs; containerd's and Docker's equivalents).
// A bind mount whose source lies below one of them is private to the
// container: its content travels in the archive and restore recreates it.
// Any other bind mount is a volume of the host, which restore expects at
// the same path. (An OCI bundle directory alone does not make a source
// private: users keep data volumes beside their bundles.)
var PrivateDirs = []string{
	"/run/containers/storage/",
	"/var/run/containers/storage/",
	"/var/lib/containers/storage/overlay-containers/",
	"/var/lib/containers/storage/vfs-containers/",
	"/run/libpod/",
	"/run/containerd/",
	"/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/",
	"/var/lib/docker/containers/",
}

// privateMember is the archive directory holding private mounts' content;
// /dev/shm goes where Podman keeps it, devshm-checkpoint.tar.
const privateMember = "private"

// isPrivate reports whether a bind mount's host source belongs to the
// container alone.
func isPrivate(src string) bool {
	for _, d := range PrivateDirs {
		if strings.HasPrefix(src, d) {
			return true
		}
	}
	return false
}

// volumesMember is the archive directory holding exported volumes.
const volumesMember = "volumes"

// markPrivate names, for each private bind mount, the archive member that
// will hold its content; with exportVolumes, for each volume too (a
// directory or a regular file: a device such as a masked path's /dev/null
// is the host's).
func markPrivate(ext []format.ExternalMount, exportVolumes bool) {
	for i := range ext {
		m := &ext[i]
		if m.Kind != format.MountBind || m.Source == "" {
			continue
		}
		private := isPrivate(m.Source)
		if !private && !exportVolumes {
			continue
		}
		st, err := os.Stat(m.Source)
		if err != nil || !st.IsDir() && !st.Mode().IsRegular() {
			continue // classifyMounts found it; a vanished source stays a plain bind
		}
		m.Dir = st.IsDir()
		dir := privateMember
		if !private {
			dir, m.Exported = volumesMember, true
		}
		switch {
		case private && m.Key == "/dev/shm" && m.Dir:
			m.Content = format.DevShmCheckpointTar
		case m.Dir:
			m.Content = path.Join(dir, strings.TrimPrefix(m.Key, "/")+".tar")
		default:
			m.Content = path.Join(dir, strings.TrimPrefix(m.Key, "/"))
		}
	}
}

// savePrivate copies the content of the private mounts into the staging
// directory: a file as it is, a directory as a tar. The container is
// frozen meanwhile, so the content matches its memory.
func savePrivate(ctx context.Context, stage string, ext []format.ExternalMount) error {
	for _, m := range ext {
		if m.Content == "" {
			continue
		}
		dst := filepath.Join(stage, filepath.FromSlash(m.Content))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return fmt.Errorf("stage %s: %w", m.Key, err)
		}
		var err error
		if m.Dir {
			err = tarDir(ctx, dst, m.Source)
		} else {
			err = copyFile(dst, m.Source)
		}
		if err != nil {
			return fmt.Errorf("save the container's %s (%s): %w", m.Key, m.Source, err)
		}
	}
	return nil
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tarDir writes the tree under dir (regular files, directories, symlinks)
// as a tar, names relative to dir, as Podman writes devshm-checkpoint.tar.
func tarDir(ctx context.Context, dst, dir string) (err error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	tw := tar.NewWriter(f)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	err = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&os.ModeSymlink != 0 {
			if link, err = root.Readlink(rel); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return fmt.Errorf("%s: %s is neither a file, a directory nor a symlink", p, info.Mode().Type())
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		in, err := root.Open(rel)
		if err != nil {
			return err
		}
		defer in.Close()
		_, err = io.CopyN(tw, in, hdr.Size)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
