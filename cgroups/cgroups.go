// Package cgroups locates a container's cgroups on cgroup v1, v2 and hybrid
// hosts, and creates, empties and removes them around a restore.
package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	oc "github.com/opencontainers/cgroups"

	"github.com/crtool/crtool/format"
)

// Layout is how the host mounts cgroups.
type Layout string

const (
	V1     Layout = "v1"     // controllers on v1 hierarchies only
	V2     Layout = "v2"     // the unified hierarchy only
	Hybrid Layout = "hybrid" // v1 controllers plus an empty unified hierarchy
)

// Unified is the key of the cgroup v2 hierarchy in a Set.
const Unified = ""

// DetectLayout reports the host's cgroup layout.
func DetectLayout() Layout {
	switch {
	case oc.IsCgroup2UnifiedMode():
		return V2
	case oc.IsCgroup2HybridMode():
		return Hybrid
	default:
		return V1
	}
}

// Set maps a hierarchy to a cgroup path inside it. Keys are v1 controller
// names ("memory", "name=systemd") or Unified for cgroup v2.
type Set map[string]string

// ForPID reads /proc/PID/cgroup.
func ForPID(pid int) (Set, error) {
	m, err := oc.ParseCgroupFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, fmt.Errorf("cgroups of pid %d: %w", pid, err)
	}
	return Set(m), nil
}

// IsRoot reports whether every path of the set is a hierarchy's root, as
// for a process that is not in any container's cgroup.
func (s Set) IsRoot() bool {
	for _, p := range s {
		if p != "/" {
			return false
		}
	}
	return true
}

// Keys returns the hierarchies of the set, sorted.
func (s Set) Keys() []string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Dir is the host directory of the cgroup path p in hierarchy h.
// The path may come from an archive: it must be clean and absolute, so
// that the directory stays below the hierarchy's mount (no "..").
func Dir(h, p string) (string, error) {
	if err := format.CheckCgroupPath("cgroup path", p); err != nil {
		return "", err
	}
	mnt, root, err := mountOf(h)
	if err != nil {
		return "", err
	}
	return dirIn(mnt, root, h, p)
}

// dirIn is Dir for hierarchy h mounted at mnt with the cgroup root as its
// root: a mount inside a cgroup namespace, or of a subtree, shows only the
// cgroups below root.
func dirIn(mnt, root, h, p string) (string, error) {
	rel, ok := strings.CutPrefix(p, root)
	if !ok || root != "/" && rel != "" && rel[0] != '/' {
		return "", fmt.Errorf("cgroup %s of hierarchy %q is outside this mount namespace's view (%s)", p, h, root)
	}
	return filepath.Join(mnt, rel), nil
}

// Dirs returns the host directory of each hierarchy in the set. Hierarchies
// that the host does not mount are left out.
func (s Set) Dirs() map[string]string {
	out := map[string]string{}
	for _, k := range s.Keys() {
		if d, err := Dir(k, s[k]); err == nil {
			out[k] = d
		}
	}
	return out
}

// FreezerDir is the directory crtool freezes: the v1 freezer controller's
// when the host has one, else the unified hierarchy's.
func (s Set) FreezerDir() (string, error) {
	if p, ok := s["freezer"]; ok {
		if d, err := Dir("freezer", p); err == nil {
			return d, nil
		}
	}
	if p, ok := s[Unified]; ok {
		return Dir(Unified, p)
	}
	return "", errors.New("no freezer: neither a v1 freezer controller nor cgroup v2 is mounted")
}

// mountOf finds where hierarchy h is mounted and which cgroup is its root.
func mountOf(h string) (mountpoint, root string, err error) {
	if h == Unified {
		switch {
		case oc.IsCgroup2UnifiedMode():
			return "/sys/fs/cgroup", "/", nil
		case oc.IsCgroup2HybridMode():
			return "/sys/fs/cgroup/unified", "/", nil
		}
		return "", "", errors.New("cgroup v2 is not mounted")
	}
	mnt, root, err := oc.FindCgroupMountpointAndRoot("", h)
	if err != nil {
		return "", "", fmt.Errorf("cgroup hierarchy %q: %w", h, err)
	}
	return mnt, root, nil
}

// MountPoint is where hierarchy h is mounted on the host.
func MountPoint(h string) (string, error) {
	mnt, _, err := mountOf(h)
	return mnt, err
}

// Pids lists the processes in dir and its descendant cgroups.
func Pids(dir string) ([]int, error) {
	pids, err := oc.GetAllPids(dir)
	if err != nil {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", dir, err)
	}
	return pids, nil
}

// Missing returns the directories, parents first, that must be created for
// the set to exist on this host.
func (s Set) Missing() ([]string, error) {
	var missing []string
	seen := map[string]bool{}
	for _, k := range s.Keys() {
		d, err := Dir(k, s[k])
		if err != nil {
			return nil, err
		}
		mnt, _ := MountPoint(k)
		for _, p := range toCreate(d, mnt, exists) {
			if !seen[p] {
				seen[p] = true
				missing = append(missing, p)
			}
		}
	}
	return missing, nil
}

// toCreate lists the directories from below mnt down to d, parents first,
// that do not exist yet.
func toCreate(d, mnt string, exists func(string) bool) []string {
	var chain []string
	for p := d; p != mnt && p != "/" && p != "."; p = filepath.Dir(p) {
		if exists(p) {
			break
		}
		chain = append(chain, p)
	}
	slices.Reverse(chain)
	return chain
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Kill sends SIGKILL to every process in dir and its descendants and waits
// up to timeout for them to be gone. A frozen cgroup must be thawed for the
// kill to take effect.
func Kill(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := oc.GetAllPids(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("kill cgroup %s: %w", dir, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill cgroup %s: %d processes still there after %v", dir, len(pids), timeout)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(time.Millisecond)
	}
}

// Remove removes the given cgroup directories, children first; directories
// that are already gone are fine.
func Remove(dirs []string) error {
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := oc.RemovePath(dirs[i]); err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}

// Procs lists the processes directly in dir (not its descendants).
func Procs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids, nil
}
