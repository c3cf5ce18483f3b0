package dump

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/capability"
)

// specFor returns the OCI runtime spec of the container: the bundle's
// config.json when a runtime recorded one, else a spec synthesized from
// /proc so that spec.dump is always a full spec.
func specFor(c *container, t *mountTable, ext []format.ExternalMount) (*specs.Spec, []byte, error) {
	if c.runtime.Bundle != "" {
		b, err := os.ReadFile(filepath.Join(c.runtime.Bundle, "config.json"))
		if err == nil {
			var s specs.Spec
			if err := json.Unmarshal(b, &s); err != nil {
				return nil, nil, fmt.Errorf("parse %s/config.json: %w", c.runtime.Bundle, err)
			}
			if b, err = annotate(b); err != nil {
				return nil, nil, fmt.Errorf("%s/config.json: %w", c.runtime.Bundle, err)
			}
			return &s, b, nil
		}
	}
	s, err := synthesizeSpec(c, t, ext)
	if err != nil {
		return nil, nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, nil, fmt.Errorf("encode spec: %w", err)
	}
	return s, b, nil
}

// nsSpecType maps /proc/PID/ns names to OCI namespace types.
var nsSpecType = map[string]specs.LinuxNamespaceType{
	"net": specs.NetworkNamespace, "pid": specs.PIDNamespace, "mnt": specs.MountNamespace,
	"ipc": specs.IPCNamespace, "uts": specs.UTSNamespace, "cgroup": specs.CgroupNamespace,
	"user": specs.UserNamespace, "time": specs.TimeNamespace,
}

func synthesizeSpec(c *container, t *mountTable, ext []format.ExternalMount) (*specs.Spec, error) {
	pid := c.pid
	st, err := readStatus(pid)
	if err != nil {
		return nil, fmt.Errorf("status of pid %d: %w", pid, err)
	}
	s := &specs.Spec{
		Version: "1.0.2-dev",
		Process: &specs.Process{
			Args: nulSplit(fmt.Sprintf("/proc/%d/cmdline", pid)),
			Env:  nulSplit(fmt.Sprintf("/proc/%d/environ", pid)),
			Cwd:  "/",
		},
		Root:        &specs.Root{Path: c.root},
		Annotations: map[string]string{"io.crtool.synthesized": "true", managerAnnotation: "libpod"},
		Linux:       &specs.Linux{},
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
		if rel, ok := strings.CutPrefix(cwd, strings.TrimSuffix(c.root, "/")); ok && (rel == "" || rel[0] == '/') {
			s.Process.Cwd = "/" + strings.TrimPrefix(rel, "/")
		}
	}
	s.Process.User.UID = uint32(firstField(st["Uid"]))
	s.Process.User.GID = uint32(firstField(st["Gid"]))
	for _, g := range strings.Fields(st["Groups"]) {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(n))
		}
	}
	s.Process.NoNewPrivileges = st["NoNewPrivs"] == "1"
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:    capability.FromHex(st["CapBnd"]),
		Effective:   capability.FromHex(st["CapEff"]),
		Permitted:   capability.FromHex(st["CapPrm"]),
		Inheritable: capability.FromHex(st["CapInh"]),
		Ambient:     capability.FromHex(st["CapAmb"]),
	}
	s.Process.Rlimits = rlimits(pid)
	if h, err := hostnameOf(pid); err == nil {
		s.Hostname = h
	}
	extByKey := map[string]format.ExternalMount{}
	for _, e := range ext {
		extByKey[e.Key] = e
	}
	for _, m := range t.mounts {
		if m == t.root {
			continue
		}
		sm := specs.Mount{Destination: m.Mountpoint, Type: m.FSType, Source: m.Source, Options: strings.Split(m.Options, ",")}
		if e, ok := extByKey[m.Mountpoint]; ok && e.Kind == format.MountBind {
			sm.Type, sm.Source = "bind", e.Source
			sm.Options = append([]string{"rbind"}, sm.Options...)
		}
		s.Mounts = append(s.Mounts, sm)
	}
	for _, name := range nsTypes {
		ns, ok := c.namespaces[name]
		if !ok || ns.Shared {
			continue
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: nsSpecType[name], Path: ns.Path})
	}
	if p, ok := c.cgroups[""]; ok && p != "/" {
		s.Linux.CgroupsPath = p
	} else if p, ok := c.cgroups["freezer"]; ok {
		s.Linux.CgroupsPath = p
	}
	return s, nil
}

func nulSplit(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func firstField(s string) int {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// limitNames maps /proc/PID/limits rows to OCI rlimit types.
var limitNames = map[string]string{
	"Max cpu time": "RLIMIT_CPU", "Max file size": "RLIMIT_FSIZE", "Max data size": "RLIMIT_DATA",
	"Max stack size": "RLIMIT_STACK", "Max core file size": "RLIMIT_CORE", "Max resident set": "RLIMIT_RSS",
	"Max processes": "RLIMIT_NPROC", "Max open files": "RLIMIT_NOFILE", "Max locked memory": "RLIMIT_MEMLOCK",
	"Max address space": "RLIMIT_AS", "Max file locks": "RLIMIT_LOCKS", "Max pending signals": "RLIMIT_SIGPENDING",
	"Max msgqueue size": "RLIMIT_MSGQUEUE", "Max nice priority": "RLIMIT_NICE", "Max realtime priority": "RLIMIT_RTPRIO",
	"Max realtime timeout": "RLIMIT_RTTIME",
}

func rlimits(pid int) []specs.POSIXRlimit {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return nil
	}
	var out []specs.POSIXRlimit
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		for prefix, typ := range limitNames {
			rest, ok := strings.CutPrefix(line, prefix+" ")
			if !ok {
				continue
			}
			f := strings.Fields(rest)
			if len(f) < 2 {
				continue
			}
			out = append(out, specs.POSIXRlimit{Type: typ, Soft: limitValue(f[0]), Hard: limitValue(f[1])})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

func limitValue(s string) uint64 {
	if s == "unlimited" {
		return math.MaxUint64
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// hostnameOf reads the hostname in pid's UTS namespace, on a locked
// thread that returns to crtool's namespace before it is unlocked. (A thread
// left locked in a foreign namespace is not always discarded: the main
// thread is parked instead, and /proc/self/ns then points to the container.)
func hostnameOf(pid int) (string, error) {
	type result struct {
		name string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/uts")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer own.Close()
		theirs, err := os.Open(fmt.Sprintf("/proc/%d/ns/uts", pid))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer theirs.Close()
		if err := unix.Setns(int(theirs.Fd()), unix.CLONE_NEWUTS); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		var u unix.Utsname
		err = unix.Uname(&u)
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWUTS) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{name: unix.ByteSliceToString(u.Nodename[:]), err: err}
	}()
	r := <-ch
	return r.name, r.err
}

// managerAnnotation tells readers of the archive which engine's format it
// follows: checkpointctl takes config.dump's name and creation time only
// for "libpod", whose layout crtool writes.
const managerAnnotation = "io.container.manager"

// annotate adds managerAnnotation to a runtime's config.json unless the
// runtime set one, keeping every other field as the runtime wrote it.
func annotate(config []byte) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(config, &m); err != nil {
		return nil, err
	}
	ann, _ := m["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
	}
	if _, ok := ann[managerAnnotation]; ok {
		return config, nil
	}
	ann[managerAnnotation] = "libpod"
	m["annotations"] = ann
	return json.MarshalIndent(m, "", "  ")
}
