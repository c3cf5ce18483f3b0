package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/criuimg"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/safefs"
)

// mountsDir, in a container's state directory, holds the recreated
// sources of its private mounts, one per mount point ("etc_hosts").
const mountsDir = "mounts"

// preparePrivate recreates the container's private mounts (the files its
// engine generated for it, its /dev/shm) from the archive under the state
// directory, and points their external mounts there: the dumping host's
// paths belong to an engine that has forgotten the container. So it does
// for exported volumes whose source this host lacks. When the
// restore built the root filesystem, it also gets the mount points the
// image lacks.
func (r *restorer) preparePrivate(ctx context.Context) error {
	if r.fg != nil {
		return nil // fill wrote what replaces the writer's files
	}
	for i := range r.md.Mounts {
		m := &r.md.Mounts[i]
		if m.Content == "" || m.Exported && exists(m.Source) {
			// An exported volume present on this host is bound in place.
			continue
		}
		if err := r.stateDir(); err != nil {
			return err
		}
		src, err := r.recreate(ctx, *m)
		if err != nil {
			return fmt.Errorf("recreate the container's %s: %w", m.Key, err)
		}
		m.Source = src
	}
	if r.builtRoot {
		targets, err := rootTargets(r.wd.Images, r.md.Mounts)
		if err != nil {
			return err
		}
		return makeMountTargets(r.root, targets)
	}
	return nil
}

// recreate writes a private mount's content from the archive into the
// state directory and returns its path there.
func (r *restorer) recreate(ctx context.Context, m format.ExternalMount) (string, error) {
	name, err := safefs.CleanName(m.Content)
	if err != nil {
		return "", errdefs.Newf(errdefs.ErrInvalidArchive, "content %q of mount %s: %w", m.Content, m.Key, err)
	}
	in, err := os.Open(filepath.Join(r.wd.Path, name))
	if err != nil {
		return "", errdefs.Newf(errdefs.ErrInvalidArchive, "the archive lacks %s: %w", name, err)
	}
	defer in.Close()
	dir := filepath.Join(r.dir.path, mountsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := strings.ReplaceAll(strings.Trim(m.Key, "/"), "/", "_")
	if base == "" || base == "." || base == ".." {
		return "", errdefs.Newf(errdefs.ErrInvalidArchive, "private mount %q has no usable mount point", m.Key)
	}
	dst := filepath.Join(dir, base)
	if m.Dir {
		mode := os.FileMode(0o755)
		if m.Key == "/dev/shm" {
			mode = 0o1777 | os.ModeSticky
		}
		if err := os.Mkdir(dst, mode.Perm()); err != nil {
			return "", err
		}
		if err := os.Chmod(dst, mode); err != nil {
			return "", err
		}
		// An empty directory's tar holds nothing but its end marker, which
		// Extract does not take for an archive.
		if _, err := tar.NewReader(in).Next(); errors.Is(err, io.EOF) {
			return dst, nil
		}
		if _, err := in.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		if _, err := archive.Extract(ctx, in, dst, archive.ExtractOptions{}); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return dst, nil
	}
	st, err := in.Stat()
	if err != nil {
		return "", err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	return dst, out.Close()
}

// rootTargets are the mount points directly on the container's root
// filesystem, as CRIU recorded them, with the source of the external ones.
func rootTargets(imgDir string, mounts []format.ExternalMount) (map[string]string, error) {
	names, _ := filepath.Glob(filepath.Join(imgDir, "mountpoints-*.img"))
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	nss, err := criuimg.New(criuimg.Dir(imgDir), format.CheckpointDir+"/").MountNamespaces(names)
	if err != nil {
		return nil, err
	}
	sources := map[string]string{}
	for _, m := range mounts {
		sources[m.Key] = m.Source
	}
	targets := map[string]string{}
	for _, ns := range nss {
		if ns.Root == nil {
			continue
		}
		for _, me := range ns.Mounts {
			if me.GetParentMntId() == ns.Root.GetMntId() && me.GetMountpoint() != "/" {
				targets[me.GetMountpoint()] = sources[me.GetExtKey()]
			}
		}
	}
	return targets, nil
}
