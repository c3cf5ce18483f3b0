package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// uniqueID returns prefix followed by 8 random hex digits.
func uniqueID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// runcEnv is what the two runc-based tools share: how to start a workload
// as a runc container from a busybox bundle in a network namespace and
// cgroup of its own.
type runcEnv struct {
	runc         string
	criu         string
	rootfs       string // template root filesystem, copied per container
	dir          string // containers' directories go here
	cgroupParent string // e.g. "crtool-bench-1a2b3c4d", below every hierarchy's root
	launcher     string // rusage helper for the measured commands
}

// bundleContainer is one runc container. Everything it creates has a
// unique name and goes in cleanup.
type bundleContainer struct {
	env        *runcEnv
	w          Workload
	id         string
	dir        string
	bundle     string
	runcRoot   string
	runcLog    string
	netnsName  string
	netnsPath  string
	cgroupPath string
	pid        int
}

// start runs w in a new runc container and waits until it answers.
func (e *runcEnv) start(ctx context.Context, w Workload, prefix string) (_ *bundleContainer, err error) {
	id := uniqueID(prefix)
	c := &bundleContainer{
		env:        e,
		w:          w,
		id:         id,
		dir:        filepath.Join(e.dir, id),
		cgroupPath: "/" + e.cgroupParent + "/" + id,
		netnsName:  id,
		netnsPath:  "/run/netns/" + id,
	}
	c.bundle = filepath.Join(c.dir, "bundle")
	c.runcRoot = filepath.Join(c.dir, "runc")
	c.runcLog = filepath.Join(c.dir, "runc.log")
	defer func() {
		if err != nil {
			c.cleanup()
		}
	}()
	if err := os.MkdirAll(c.bundle, 0o700); err != nil {
		return nil, err
	}
	if _, err := run(ctx, command{name: "cp", args: []string{"-a", e.rootfs, filepath.Join(c.bundle, "rootfs")}}); err != nil {
		return nil, err
	}
	if _, err := run(ctx, command{name: "ip", args: []string{"netns", "add", c.netnsName}}); err != nil {
		c.netnsName = "" // not ours
		return nil, err
	}
	if _, err := run(ctx, command{name: "ip", args: []string{"-n", c.netnsName, "link", "set", "lo", "up"}}); err != nil {
		return nil, err
	}
	if err := c.writeConfig(ctx); err != nil {
		return nil, err
	}
	// stdio is /dev/null: runc checkpoints that as it is, and a detached
	// container must not hold the benchmark's pipes.
	if _, err := run(ctx, command{name: e.runc, args: c.runcArgs("run", "-d", "--bundle", c.bundle, c.id), null: true}); err != nil {
		return nil, fmt.Errorf("%w%s", err, tail(c.readLog(), 1500))
	}
	if c.pid, err = c.statePid(ctx); err != nil {
		return nil, err
	}
	if _, err := waitAnswer(ctx, c.netnsPath, w, w.startTimeout()); err != nil {
		return nil, fmt.Errorf("container %s (%s) does not answer: %w", c.id, strings.Join(w.Args, " "), err)
	}
	return c, nil
}

// runcArgs prefixes args with the container's private runc state and log.
func (c *bundleContainer) runcArgs(args ...string) []string {
	return append([]string{"--root", c.runcRoot, "--log", c.runcLog, "--criu", c.env.criu}, args...)
}

func (c *bundleContainer) readLog() string {
	b, _ := os.ReadFile(c.runcLog)
	return string(b)
}

// writeConfig writes config.json: runc's default spec with the workload,
// the container's network namespace and cgroup, an open-files limit root
// may set without CAP_SYS_RESOURCE, and root inside.
func (c *bundleContainer) writeConfig(ctx context.Context) error {
	if _, err := run(ctx, command{name: c.env.runc, args: []string{"spec", "--bundle", c.bundle}}); err != nil {
		return err
	}
	p := filepath.Join(c.bundle, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("runc spec: %w", err)
	}
	proc, ok1 := cfg["process"].(map[string]any)
	linux, ok2 := cfg["linux"].(map[string]any)
	nss, ok3 := linux["namespaces"].([]any)
	if !ok1 || !ok2 || !ok3 {
		return errors.New("runc spec: unexpected layout")
	}
	proc["terminal"] = false
	proc["args"] = c.w.Args
	proc["user"] = map[string]any{"uid": 0, "gid": 0}
	proc["rlimits"] = []map[string]any{{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}}
	cfg["root"] = map[string]any{"path": "rootfs", "readonly": false}
	cfg["hostname"] = c.id
	linux["cgroupsPath"] = c.cgroupPath
	for _, n := range nss {
		if ns, ok := n.(map[string]any); ok && ns["type"] == "network" {
			ns["path"] = c.netnsPath
		}
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(p, out, 0o644)
}

// statePid asks runc for the container's init.
func (c *bundleContainer) statePid(ctx context.Context) (int, error) {
	r, err := run(ctx, command{name: c.env.runc, args: c.runcArgs("state", c.id)})
	if err != nil {
		return 0, err
	}
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		return 0, fmt.Errorf("runc state %s: %w", c.id, err)
	}
	if st.Pid <= 0 {
		return 0, fmt.Errorf("runc state %s: no pid", c.id)
	}
	return st.Pid, nil
}

// cgroupDirs lists the container's cgroup in every hierarchy.
func (c *bundleContainer) cgroupDirs() []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + c.cgroupPath)
	if _, err := os.Stat("/sys/fs/cgroup" + c.cgroupPath); err == nil {
		dirs = append(dirs, "/sys/fs/cgroup"+c.cgroupPath) // cgroup v2
	}
	return dirs
}

// pids lists the processes in the container's cgroups.
func (c *bundleContainer) pids() []int {
	seen := map[int]bool{}
	var out []int
	for _, d := range c.cgroupDirs() {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

// killAll thaws the container and kills every process in its cgroups (the
// original's or a restored one's, which runc may not know).
func (c *bundleContainer) killAll() error {
	for _, d := range c.cgroupDirs() {
		_ = os.WriteFile(filepath.Join(d, "freezer.state"), []byte("THAWED"), 0)
		_ = os.WriteFile(filepath.Join(d, "cgroup.freeze"), []byte("0"), 0)
	}
	for i := 0; i < 500; i++ {
		pids := c.pids()
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("processes of %s survive SIGKILL: %v", c.id, c.pids())
}

// cleanup removes everything the container made: processes, runc state,
// cgroups, network namespace, directory. It is safe to call twice.
func (c *bundleContainer) cleanup() []error {
	var errs []error
	ctx, cancel := cleanupContext()
	defer cancel()
	if err := c.killAll(); err != nil {
		errs = append(errs, err)
	}
	if _, err := os.Stat(filepath.Join(c.runcRoot, c.id)); err == nil {
		if _, err := run(ctx, command{name: c.env.runc, args: c.runcArgs("delete", "-f", c.id)}); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range c.cgroupDirs() {
		var err error
		for i := 0; i < 100; i++ {
			if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
		}
	}
	if c.netnsName != "" {
		if _, err := os.Stat("/run/netns/" + c.netnsName); err == nil {
			if _, err := run(ctx, command{name: "ip", args: []string{"netns", "del", c.netnsName}}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// removeCgroupParent removes the run's cgroup parent in every hierarchy.
func removeCgroupParent(parent string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
	dirs = append(dirs, "/sys/fs/cgroup/"+parent)
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}
