package dump

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/format"
)

// mountTable is the container's mount namespace as its init sees it.
type mountTable struct {
	mounts []*mountinfo.Info
	ids    map[int]bool
	root   *mountinfo.Info
}

func readMounts(pid int) (*mountTable, error) {
	ms, err := mountinfo.PidMountInfo(pid)
	if err != nil {
		return nil, fmt.Errorf("mounts of pid %d: %w", pid, err)
	}
	t, err := newMountTable(ms)
	if err != nil {
		return nil, fmt.Errorf("mounts of pid %d: %w", pid, err)
	}
	return t, nil
}

func newMountTable(ms []*mountinfo.Info) (*mountTable, error) {
	t := &mountTable{mounts: ms, ids: map[int]bool{}}
	for _, m := range ms {
		t.ids[m.ID] = true
		if m.Mountpoint == "/" {
			t.root = m
		}
	}
	if t.root == nil {
		return nil, fmt.Errorf("no root mount")
	}
	return t, nil
}

// rootPath finds the host path of the container's root filesystem. The
// /proc/PID/root link cannot tell: after pivot_root it names a mount that
// the host's mount namespace does not show, and reads as "/".
func rootPath(t *mountTable) (string, error) {
	host, err := mountinfo.GetMounts(nil)
	if err != nil {
		return "", fmt.Errorf("host mounts: %w", err)
	}
	p := hostPath(host, t.root, func(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() })
	if p == "" {
		return "", fmt.Errorf("root filesystem (%s %s, %d:%d%s) of the container is not visible from the host: %w", t.root.FSType, t.root.Source, t.root.Major, t.root.Minor, t.root.Root, ErrUnsupported)
	}
	return p, nil
}

// externalMounts finds the mounts whose source lies outside the container:
// bind mounts of host files and directories (volumes, masked paths bound
// from the host's /dev/null) and cgroup hierarchies. CRIU refuses to dump
// them unless told they are external, and restore must bind them again.
func externalMounts(t *mountTable) ([]format.ExternalMount, error) {
	host, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("host mounts: %w", err)
	}
	return classifyMounts(t, host, func(p string) bool { _, err := os.Lstat(p); return err == nil })
}

// classifyMounts is externalMounts against a given host mount table; exists
// reports whether a host path exists.
func classifyMounts(t *mountTable, host []*mountinfo.Info, exists func(string) bool) ([]format.ExternalMount, error) {
	var out []format.ExternalMount
	for _, m := range t.mounts {
		if m == t.root || reachableInside(t, m) || !sameDevice(host, m) {
			continue
		}
		em := format.ExternalMount{Key: m.Mountpoint, Kind: format.MountBind, FSType: m.FSType}
		if m.FSType == "cgroup" || m.FSType == "cgroup2" {
			em.Kind = format.MountCgroup
			em.Hierarchy = hierarchyOf(m)
			em.CgroupPath = m.Root
		}
		em.Source = hostPath(host, m, exists)
		if em.Source == "" && em.Kind == format.MountBind {
			return nil, fmt.Errorf("mount %s (%s %s:%d:%d%s): %w: its source is not visible from the host", m.Mountpoint, m.FSType, m.Source, m.Major, m.Minor, m.Root, ErrUnsupported)
		}
		out = append(out, em)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// reachableInside reports whether another mount of the container shows the
// same filesystem at a parent of m's root, so CRIU can recreate m as a bind
// of it.
func reachableInside(t *mountTable, m *mountinfo.Info) bool {
	for _, o := range t.mounts {
		if o == m || o.Major != m.Major || o.Minor != m.Minor {
			continue
		}
		if o.Root != m.Root && isUnder(m.Root, o.Root) || o.Root == m.Root && o.ID < m.ID {
			return true
		}
	}
	return false
}

// sameDevice reports whether the host mounts the filesystem of m too: then m
// is a view of host state rather than the container's own instance (its
// proc, sysfs, tmpfs and devpts have devices of their own).
func sameDevice(host []*mountinfo.Info, m *mountinfo.Info) bool {
	for _, h := range host {
		if h.Major == m.Major && h.Minor == m.Minor {
			return true
		}
	}
	return false
}

// hostPath is where the host sees the root of mount m, or "".
func hostPath(host []*mountinfo.Info, m *mountinfo.Info, exists func(string) bool) string {
	var best *mountinfo.Info
	for _, h := range host {
		if h.Major != m.Major || h.Minor != m.Minor || !isUnder(m.Root, h.Root) {
			continue
		}
		if best == nil || len(h.Root) > len(best.Root) {
			best = h
		}
	}
	if best == nil {
		return ""
	}
	rel := strings.TrimPrefix(m.Root, best.Root)
	p := filepath.Join(best.Mountpoint, rel)
	if !exists(p) {
		return ""
	}
	return p
}

// hierarchyOf names a cgroup mount's hierarchy as cgroups.Set keys do.
func hierarchyOf(m *mountinfo.Info) string {
	if m.FSType == "cgroup2" {
		return cgroups.Unified
	}
	var ctrls []string
	for _, o := range strings.Split(m.VFSOptions, ",") {
		switch {
		case strings.HasPrefix(o, "name="):
			ctrls = append(ctrls, o)
		case o == "rw" || o == "ro" || strings.Contains(o, "=") || strings.HasPrefix(o, "no") || o == "xattr" || o == "clone_children" || o == "cpuset_v2_mode" || o == "favordynmods":
		default:
			ctrls = append(ctrls, o)
		}
	}
	return strings.Join(ctrls, ",")
}

func isUnder(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}
