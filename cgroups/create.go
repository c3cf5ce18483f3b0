package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	oc "github.com/opencontainers/cgroups"
	ocfs "github.com/opencontainers/cgroups/fs"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/undo"
)

// A host that never ran the container lacks the cgroups above the
// container's own ("/libpod_parent" for Podman's). CRIU creates a missing
// path with one mkdir -p and then writes the recorded cpuset.cpus and
// cpuset.mems into the container's cgroup only; on cgroup v1 the new
// parents start with empty cpuset.cpus and cpuset.mems, a child may take
// only a subset of its parent's, and the write fails with EACCES. So
// restore creates the parents itself first.
//
// The container's own directory is left for CRIU to create: CRIU's default
// ("soft") cgroup mode writes the recorded properties (memory limits,
// pids.max, cpu shares, the cpuset) only into directories it created, and
// leaves an existing one as it finds it. Creating it here would drop the
// container's limits.

// hierarchyDir is the host directory of a set's path in one mounted
// hierarchy.
type hierarchyDir struct {
	key    string // the set's key: "cpuset", "cpu,cpuacct", Unified
	mnt    string // where the hierarchy is mounted
	dir    string // the container's cgroup in it
	cpuset bool   // a v1 hierarchy with the cpuset controller
}

// hostDirs resolves every hierarchy of the set to its directory on this
// host, one entry per directory (co-mounted controllers share one). Named
// v1 hierarchies ("name=systemd") and cgroup v2 that the host does not
// mount are left out: CRIU mounts those itself and they carry no cpuset. A
// v1 controller the host does not mount is refused, since CRIU could not
// restore into it.
func (s Set) hostDirs() ([]hierarchyDir, error) {
	var out []hierarchyDir
	seen := map[string]bool{}
	for _, k := range s.Keys() {
		hd, ok, err := resolve(k, s[k])
		if err != nil {
			return nil, err
		}
		if !ok || seen[hd.dir] {
			continue
		}
		seen[hd.dir] = true
		out = append(out, hd)
	}
	return out, nil
}

// resolve finds the host directory of path p in hierarchy k. A key may
// name co-mounted controllers ("cpu,cpuacct", as CRIU's images do on hosts
// that co-mount them); any one of them finds the mount.
func resolve(k, p string) (hierarchyDir, bool, error) {
	ctrls := strings.Split(k, ",")
	for _, c := range ctrls {
		mnt, err := MountPoint(c)
		if err != nil {
			continue
		}
		dir, err := Dir(c, p)
		if err != nil {
			return hierarchyDir{}, false, err
		}
		hd := hierarchyDir{key: k, mnt: mnt, dir: dir}
		hd.cpuset = c != Unified && mountHas(mnt, "cpuset")
		return hd, true, nil
	}
	if k == Unified || strings.HasPrefix(k, "name=") {
		return hierarchyDir{}, false, nil
	}
	return hierarchyDir{}, false, errdefs.Newf(errdefs.ErrPrecondition,
		"the checkpoint's cgroup v1 controller %s is not mounted on this host: mount it under /sys/fs/cgroup/%s, or restore on a host that has it", k, ctrls[0])
}

// mountHas reports whether the v1 hierarchy mounted at mnt carries the
// controller ctrl (co-mounted ones share a mount).
func mountHas(mnt, ctrl string) bool {
	m, err := MountPoint(ctrl)
	return err == nil && m == mnt
}

// Prepare creates, in every hierarchy of the set this host mounts, the
// cgroups above the container's own that are missing, parents first. On
// cgroup v1 each directory of the cpuset path whose cpuset.cpus or
// cpuset.mems is empty, new or not, gets the value of its parent, as runc's
// libcontainer does (its own code does it here): no cgroup below an empty
// cpuset can take a CPU. On cgroup v2 each new directory passes its
// controllers on to its children. Other existing directories are used as
// they are. The removal of every directory Prepare creates is pushed on
// stack, so a failed restore removes them newest first, after the
// container's own. It returns the directories it created, parents first.
func Prepare(s Set, stack *undo.Stack) ([]string, error) {
	hds, err := s.hostDirs()
	if err != nil {
		return nil, err
	}
	var created []string
	for _, hd := range hds {
		made, err := hd.prepare(stack)
		created = append(created, made...)
		if err != nil {
			return created, fmt.Errorf("prepare the container's cgroup %s: %w", hd.dir, err)
		}
	}
	return created, nil
}

// prepare creates the parents of one hierarchy's directory.
func (hd hierarchyDir) prepare(stack *undo.Stack) (_ []string, err error) {
	parent := filepath.Dir(hd.dir)
	missing := toCreate(parent, hd.mnt, exists)
	var created []string
	var journalErr error
	defer func() {
		if journalErr != nil && err == nil {
			err = journalErr
		}
	}()
	push := func(d string) {
		created = append(created, d)
		// Journaled for a guardian too (internal/guardian's rmdir-cgroup).
		rec := undo.Record{Kind: "rmdir-cgroup", Path: d}
		if err := stack.PushRecord("remove cgroup "+d, rec, func() error { return removeCreated(d) }); err != nil {
			journalErr = err
		}
	}
	if hd.cpuset {
		if !within(hd.mnt, parent) {
			return nil, nil // directly below the root: no parent to make
		}
		// libcontainer creates the path and copies the values, top
		// down; the directories that exist afterwards were created here.
		err := (&ocfs.CpusetGroup{}).ApplyDir(parent, &oc.Resources{}, -1)
		for _, d := range missing {
			if _, serr := os.Stat(d); serr == nil {
				push(d)
			}
		}
		if err != nil {
			return created, fmt.Errorf("create with the cpus and memory nodes of its parent: %w", err)
		}
		return created, nil
	}
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue // another restore made it meanwhile: it is not ours
			}
			return created, fmt.Errorf("create %s: %w", d, err)
		}
		push(d)
		if err := delegate(d); err != nil {
			return created, err
		}
	}
	return created, nil
}

// within reports whether dir lies strictly below the mount point mnt.
func within(mnt, dir string) bool {
	rel, err := filepath.Rel(mnt, dir)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
}

// delegate enables, in a new cgroup v2 directory, every controller it has
// for its children, as runc does for the parents it creates: CRIU then
// finds the controller files (memory.max...) in the container's cgroup. A
// directory without controllers (the unified hierarchy of a hybrid host,
// or a v1 hierarchy, which has no cgroup.controllers) needs nothing.
func delegate(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil
	}
	ctrls := strings.Fields(string(b))
	if len(ctrls) == 0 {
		return nil
	}
	if err := oc.WriteFile(dir, "cgroup.subtree_control", "+"+strings.Join(ctrls, " +")); err != nil {
		return fmt.Errorf("enable controllers %s below %s: %w", strings.Join(ctrls, " "), dir, err)
	}
	return nil
}

// removeCreated removes a cgroup Prepare created. One that is gone is
// fine. One that holds another cgroup was taken over meanwhile (another
// container restored below the same new parent) and stays: it is no longer
// this restore's alone, and the failure of a child's own removal is
// reported by that child's undo.
func removeCreated(dir string) error {
	err := unix.Rmdir(dir)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOTEMPTY) {
		if hasChildren(dir) {
			return nil
		}
	}
	return err
}

// hasChildren reports whether the cgroup dir has child cgroups.
func hasChildren(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() {
			return true
		}
	}
	return false
}
