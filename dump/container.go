package dump

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/format"
)

// container is what crtool learns about a container from its init's /proc
// entry before freezing it.
type container struct {
	pid        int
	comm       string
	cgroups    cgroups.Set
	freezerDir string
	root       string
	namespaces map[string]format.Namespace
	runtime    runtimeState
}

// nsTypes are the namespaces crtool records, by their /proc/PID/ns name.
var nsTypes = []string{"net", "pid", "mnt", "ipc", "uts", "cgroup", "user", "time"}

// inspectContainer checks that pid is a container's init and gathers what
// the dump needs to know about it.
func inspectContainer(pid int, runtimeRoots []string) (*container, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: %w: give the PID of the container's init", pid, ErrNoProcess)
	}
	st, err := readStatus(pid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pid %d: %w: check the PID (runc state ID shows it)", pid, ErrNoProcess)
		}
		return nil, err
	}
	c := &container{pid: pid, comm: st["Name"]}
	if c.cgroups, err = cgroups.ForPID(pid); err != nil {
		return nil, err
	}
	if c.cgroups.IsRoot() {
		return nil, fmt.Errorf("pid %d (%s): %w: it is in the root cgroup, so crtool cannot freeze it alone; run it in a container of its own", pid, c.comm, ErrNotContainerInit)
	}
	if c.freezerDir, err = c.cgroups.FreezerDir(); err != nil {
		return nil, err
	}
	if err := checkInit(pid, c.comm, st, c.freezerDir); err != nil {
		return nil, err
	}
	if c.namespaces, err = namespaces(pid); err != nil {
		return nil, err
	}
	if c.namespaces["mnt"].Shared {
		return nil, fmt.Errorf("pid %d (%s): %w: it shares the host's mount namespace", pid, c.comm, ErrNotContainerInit)
	}
	if !c.namespaces["user"].Shared {
		return nil, fmt.Errorf("pid %d (%s): %w: containers in a user namespace cannot be dumped without CAP_SYS_RESOURCE", pid, c.comm, ErrUnsupported)
	}
	c.runtime = findRuntime(pid, runtimeRoots)
	return c, nil
}

// readStatus parses /proc/PID/status into key -> value.
func readStatus(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// checkInit accepts the first process of a PID namespace, or the process at
// the root of its cgroup's process tree; anything else is refused with a
// pointer to the process that should be dumped instead.
func checkInit(pid int, comm string, st map[string]string, freezerDir string) error {
	nspid := strings.Fields(st["NSpid"])
	if len(nspid) > 1 {
		inner := nspid[len(nspid)-1]
		if inner == "1" {
			return nil
		}
		if init := pidNamespaceInit(pid); init > 0 {
			return fmt.Errorf("pid %d (%s): %w: it is pid %s in its PID namespace, whose init is pid %d (%s): dump that one", pid, comm, ErrNotContainerInit, inner, init, commOf(init))
		}
		return fmt.Errorf("pid %d (%s): %w: it is pid %s in its PID namespace", pid, comm, ErrNotContainerInit, inner)
	}
	pids, err := cgroups.Pids(freezerDir)
	if err != nil {
		return err
	}
	return checkCgroupTree(pid, comm, st, freezerDir, pids)
}

// checkCgroupTree accepts pid, which has no PID namespace of its own, if
// it is the ancestor of every other process of its cgroup (pids).
func checkCgroupTree(pid int, comm string, st map[string]string, freezerDir string, pids []int) error {
	ppid, _ := strconv.Atoi(st["PPid"])
	for _, p := range pids {
		if p == ppid {
			return fmt.Errorf("pid %d (%s): %w: its parent pid %d (%s) is in the same cgroup: dump that one", pid, comm, ErrNotContainerInit, ppid, commOf(ppid))
		}
	}
	for _, p := range pids {
		if p != pid && !descends(p, pid) {
			return fmt.Errorf("pid %d (%s): %w: its cgroup %s also holds pid %d (%s), which it did not start", pid, comm, ErrNotContainerInit, freezerDir, p, commOf(p))
		}
	}
	return nil
}

// descends reports whether pid is a descendant of ancestor.
func descends(pid, ancestor int) bool {
	for i := 0; i < 4096 && pid > 1; i++ {
		st, err := readStatus(pid)
		if err != nil {
			return false
		}
		pid, _ = strconv.Atoi(st["PPid"])
		if pid == ancestor {
			return true
		}
	}
	return false
}

// pidNamespaceInit finds the host PID of the init of pid's PID namespace.
func pidNamespaceInit(pid int) int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		return 0
	}
	for p := pid; p > 1; {
		st, err := readStatus(p)
		if err != nil {
			return 0
		}
		f := strings.Fields(st["NSpid"])
		if other, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p)); other == ns && len(f) > 1 && f[len(f)-1] == "1" {
			return p
		}
		p, _ = strconv.Atoi(st["PPid"])
	}
	return 0
}

func commOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// namespaces records the namespaces of pid and whether crtool shares them.
func namespaces(pid int) (map[string]format.Namespace, error) {
	out := map[string]format.Namespace{}
	for _, t := range nsTypes {
		var theirs, ours unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, t), &theirs); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // the kernel lacks this namespace type
			}
			return nil, fmt.Errorf("namespace %s of pid %d: %w", t, pid, err)
		}
		if err := unix.Stat("/proc/self/ns/"+t, &ours); err != nil {
			return nil, fmt.Errorf("own namespace %s: %w", t, err)
		}
		ns := format.Namespace{Inode: theirs.Ino, Shared: theirs.Ino == ours.Ino && theirs.Dev == ours.Dev}
		if t == "net" && !ns.Shared {
			ns.Path = namedNetns(theirs)
		}
		out[t] = ns
	}
	return out, nil
}

// namedNetns finds a /run/netns bind mount of the namespace, the name that
// survives the container (an inode alone can be reused by a new namespace).
func namedNetns(want unix.Stat_t) string {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		p := filepath.Join("/run/netns", e.Name())
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			return p
		}
	}
	return ""
}
