package containers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/freezer"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/network"
	"github.com/crtool/crtool/internal/podman"
	"github.com/crtool/crtool/internal/record"
	"github.com/crtool/crtool/internal/workdir"
)

// RemoveOptions configure crtool rm.
type RemoveOptions struct {
	// Force stops a running container: SIGTERM to its init, then SIGKILL
	// to all its processes after Timeout.
	Force   bool
	Timeout time.Duration
	// Logf reports each piece removed (-v); nil discards it.
	Logf func(format string, args ...any)
}

func (o *RemoveOptions) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Remove stops the container name and removes every host piece its
// restore created. A piece already gone is fine; the record goes only
// when every piece has, so that rm can run again after a failure. Without
// Force a running container is refused.
func Remove(ctx context.Context, name string, opts RemoveOptions) error {
	r, err := record.Load(name)
	if err != nil {
		return err
	}
	if r.Init.Alive() && !opts.Force {
		return errdefs.Newf(errdefs.ErrConflict, "container %s is running (pid %d): stop it first, or remove it with crtool rm -f %s", name, r.Init.PID, name)
	}
	// Removal must run to its end even when the caller is interrupted:
	// a half-removed container is worse than a slow rm.
	ctx = context.WithoutCancel(ctx)
	if err := stop(ctx, r, opts); err != nil {
		return fmt.Errorf("rm %s: %w", name, err)
	}
	var errs []error
	for _, step := range removal(r) {
		if err := step.fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", step.what, err))
			continue
		}
		opts.logf("%s: removed %s", name, step.what)
	}
	if len(errs) > 0 {
		return fmt.Errorf("rm %s left pieces on the host (crtool rm %s tries again): %w", name, name, errors.Join(errs...))
	}
	return record.Delete(name)
}

// stop ends the container's processes: SIGTERM to its init first, when
// it still runs, then SIGKILL to whatever remains in its cgroups.
func stop(ctx context.Context, r *record.Record, opts RemoveOptions) error {
	if r.Init.Alive() {
		if err := r.Init.Signal(unix.SIGTERM); err != nil {
			return err
		}
		deadline := time.Now().Add(opts.Timeout)
		for r.Init.Alive() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	var errs []error
	for h, p := range r.Cgroups {
		dir, err := cgroups.Dir(h, p)
		if err != nil {
			continue // a hierarchy this host does not mount holds nothing
		}
		if err := thaw(dir, h); err != nil {
			errs = append(errs, err)
		}
		if err := cgroups.Kill(dir, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.Init.Signal(unix.SIGKILL); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// thaw lets the kills through to a frozen container (a dump interrupted
// without its undo, a paused container).
func thaw(dir, h string) error {
	if h != "freezer" && h != cgroups.Unified {
		return nil
	}
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	fr, err := freezer.New(dir)
	if err != nil {
		return nil // not a freezer on this hierarchy
	}
	if err := fr.Thaw(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("thaw %s: %w", dir, err)
	}
	return nil
}

type step struct {
	what string
	fn   func() error
}

// removal lists the pieces of r in the order they can go: nftables
// tables and links before the namespaces they are in, mounts before the
// state directory that holds them, child cgroups before parents.
func removal(r *record.Record) []step {
	var steps []step
	for _, t := range r.NftTables {
		steps = append(steps, step{"nftables table " + t.Family + " " + t.Name + " in " + t.Netns, func() error {
			if t.Family != "inet" {
				return fmt.Errorf("family %s: remove it with nft delete table %s %s", t.Family, t.Family, t.Name)
			}
			return network.DeleteTable(t.Netns, t.Name)
		}})
	}
	for _, l := range r.Links {
		if l.Kind == "bridge" {
			continue
		}
		steps = append(steps, step{"link " + l.Name + " in " + l.Netns, func() error { return network.DeleteLink(l.Netns, l.Name) }})
	}
	for _, l := range r.Links {
		if l.Kind != "bridge" {
			continue
		}
		steps = append(steps, step{"bridge " + l.Name + " in " + l.Netns, func() error {
			gone, err := network.DeleteBridgeIfUnused(l.Netns, l.Name)
			if err == nil && !gone {
				// Another container uses it: it stays, and so does
				// nothing of ours.
				return nil
			}
			return err
		}})
	}
	if r.Netns != nil && r.Netns.Created {
		steps = append(steps, step{"network namespace " + r.Netns.Path, func() error { return network.DeleteNamedPath(r.Netns.Path) }})
	}
	for i := len(r.Mounts) - 1; i >= 0; i-- {
		mp := r.Mounts[i]
		steps = append(steps, step{"mount " + mp, func() error { return unmount(mp) }})
	}
	for _, img := range r.Images {
		steps = append(steps, step{"image mount of " + img, func() error { return podman.UnmountImage(img) }})
	}
	if r.StateDir != "" {
		steps = append(steps, step{"state directory " + r.StateDir, func() error {
			if err := workdir.DetachMounts(r.StateDir); err != nil {
				return err
			}
			return os.RemoveAll(r.StateDir)
		}})
	}
	if len(r.CgroupDirs) > 0 {
		steps = append(steps, step{"cgroups", func() error { return removeCgroups(r.CgroupDirs) }})
	}
	return steps
}

func unmount(mp string) error {
	err := unix.Unmount(mp, 0)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	// Busy: a process of another mount namespace still sees it; it goes
	// when that one does.
	if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// removeCgroups removes the created directories, children first. A
// parent that now holds another container's cgroup is shared and stays.
// The kernel may hold a cgroup a moment after its last process died.
func removeCgroups(dirs []string) error {
	ours := map[string]bool{}
	for _, d := range dirs {
		ours[d] = true
	}
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if shared(d, ours) {
			continue
		}
		var err error
		for try := 0; try < 100; try++ {
			if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// shared reports whether dir has a child cgroup that is not one of ours.
func shared(dir string, ours map[string]bool) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() && !ours[filepath.Join(dir, e.Name())] {
			return true
		}
	}
	return false
}

// InitOf returns the init of the container name, which must run: crtool
// dump NAME checkpoints it.
func InitOf(name string) (record.Process, error) {
	r, err := record.Load(name)
	if err != nil {
		return record.Process{}, err
	}
	if !r.Init.Alive() {
		return record.Process{}, errdefs.Newf(errdefs.ErrConflict, "container %s is not running (its init, pid %d, has exited): remove it with crtool rm %s", name, r.Init.PID, name)
	}
	return r.Init, nil
}

// Exists reports whether crtool restored a container named name.
func Exists(name string) bool { return record.Exists(name) }
