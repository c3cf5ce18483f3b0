package criuimg

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/cgroup"
	criu_core "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/inventory"

	"github.com/crtool/crtool/format"
)

// Questions whose answers decide whether restoring the images is safe: the
// images come from an archive, and CRIU does what they say as root.

const inventoryName = "inventory.img"

// IdsName is the name of the namespace ids image of task pid, which CRIU
// writes when the core image does not hold the ids itself.
func IdsName(pid uint32) string { return fmt.Sprintf("ids-%d.img", pid) }

// hostNamespaceKinds are the namespaces a container has of its own. CRIU
// restores the root task into a new one of each kind whose id differs from
// inventory.img's root_ids (the namespaces of the CRIU that dumped) and
// into its own namespaces, the host's on restore, where the ids are equal.
// User, cgroup and time namespaces are left out: containers crtool
// restores share them with the host.
var hostNamespaceKinds = []struct {
	name string
	id   func(*criu_core.TaskKobjIdsEntry) (uint32, bool)
}{
	{"pid", func(e *criu_core.TaskKobjIdsEntry) (uint32, bool) { return e.GetPidNsId(), e.PidNsId != nil }},
	{"mnt", func(e *criu_core.TaskKobjIdsEntry) (uint32, bool) { return e.GetMntNsId(), e.MntNsId != nil }},
	{"net", func(e *criu_core.TaskKobjIdsEntry) (uint32, bool) { return e.GetNetNsId(), e.NetNsId != nil }},
	{"uts", func(e *criu_core.TaskKobjIdsEntry) (uint32, bool) { return e.GetUtsNsId(), e.UtsNsId != nil }},
	{"ipc", func(e *criu_core.TaskKobjIdsEntry) (uint32, bool) { return e.GetIpcNsId(), e.IpcNsId != nil }},
}

// SharedNamespaces lists the namespaces (pid, mnt, net, uts, ipc) that the
// root task would share with the host CRIU restores on. A namespace the
// images do not describe counts as shared: CRIU then creates none.
func (s *Set) SharedNamespaces() ([]string, error) {
	msg, err := s.First(inventoryName, Inventory)
	if err != nil {
		return nil, err
	}
	host := msg.(*inventory.InventoryEntry).GetRootIds()
	if host == nil {
		return nil, s.Corruptf(inventoryName, "no root_ids: cannot tell which namespaces the container had")
	}
	pid, core, err := s.rootCore()
	if err != nil {
		return nil, err
	}
	task := core.GetIds()
	if task == nil {
		msg, err := s.First(IdsName(pid), Ids)
		if err != nil {
			return nil, err
		}
		task = msg.(*criu_core.TaskKobjIdsEntry)
	}
	var shared []string
	for _, k := range hostNamespaceKinds {
		h, hok := k.id(host)
		t, tok := k.id(task)
		if !tok || (hok && h == t) {
			shared = append(shared, k.name)
		}
	}
	return shared, nil
}

// cgroupNameRE matches controller and property names ("cpu,cpuacct",
// "name=systemd", "memory.limit_in_bytes").
var cgroupNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.,=-]*$`)

// CheckCgroups vets cgroup.img, from which CRIU creates directories and
// writes properties below the hierarchies it mounts: every path must stay
// below them (no "..", no empty or "." component) and every name must be a
// plain one.
func (s *Set) CheckCgroups() error {
	if !s.Has(cgroupName) {
		return nil
	}
	msg, err := s.First(cgroupName, Cgroup)
	if err != nil {
		return err
	}
	e := msg.(*cgroup.CgroupEntry)
	for _, set := range e.GetSets() {
		for _, c := range set.GetCtls() {
			if !cgroupNameRE.MatchString(c.GetName()) {
				return s.Corruptf(cgroupName, "controller name %q is not a plain name", c.GetName())
			}
			if err := format.CheckCgroupPath("cgroup set path", c.GetPath()); err != nil {
				return s.fail(cgroupName, err)
			}
		}
	}
	var walk func(dirs []*cgroup.CgroupDirEntry, depth int) error
	walk = func(dirs []*cgroup.CgroupDirEntry, depth int) error {
		if depth > maxCgroupDepth {
			return s.Corruptf(cgroupName, "cgroup directories nest deeper than %d", maxCgroupDepth)
		}
		for _, d := range dirs {
			if !cleanRelative(d.GetDirName()) {
				return s.Corruptf(cgroupName, "cgroup directory %q is not a clean relative path", d.GetDirName())
			}
			for _, p := range d.GetProperties() {
				if n := p.GetName(); n == "" || n == "." || n == ".." || !cgroupNameRE.MatchString(n) {
					return s.Corruptf(cgroupName, "cgroup property name %q is not a plain name", n)
				}
			}
			if err := walk(d.GetChildren(), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	for _, c := range e.GetControllers() {
		for _, n := range c.GetCnames() {
			if !cgroupNameRE.MatchString(n) {
				return s.Corruptf(cgroupName, "controller name %q is not a plain name", n)
			}
		}
		if err := walk(c.GetDirs(), 0); err != nil {
			return err
		}
	}
	return nil
}

// maxCgroupDepth bounds the nesting of cgroup.img's directories, which
// crtool walks recursively.
const maxCgroupDepth = 256

// cleanRelative reports whether p, after one optional leading "/", is made
// of non-empty components none of which is "." or "..".
func cleanRelative(p string) bool {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
		for i := 0; i < len(c); i++ {
			if c[i] < ' ' || c[i] == 0x7f {
				return false
			}
		}
	}
	return true
}
