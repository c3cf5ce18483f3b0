package zdtm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crtool/crtool/internal/capability"
	"github.com/crtool/crtool/internal/testutil"
)

// TestZdtm runs every test of selection.txt through crtool and, as the
// control, through runc checkpoint/restore.
func TestZdtm(t *testing.T) {
	testutil.Require(t, env.missing == "", env.missing)
	tests, err := readSelection("selection.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, zt := range tests {
		t.Run(zt.name, func(t *testing.T) {
			t.Run("crtool", func(t *testing.T) { runZdtm(t, zt, crtoolCR) })
			t.Run("runc", func(t *testing.T) { runZdtm(t, zt, runcCR) })
		})
	}
}

// checkpointer dumps the running container c and restores it; it returns
// the restored init's host PID.
type checkpointer func(t *testing.T, c *container, opts []string) int

// runZdtm starts zt in a new container, waits until it is ready,
// checkpoints and restores it with cr, and has the restored test check
// itself.
func runZdtm(t *testing.T, zt zdtmTest, cr checkpointer) {
	c := startContainer(t, zt.name)
	pid := cr(t, c, zt.opts)
	// SIGTERM to zinit reaches the test, which checks its state, writes
	// PASS or FAIL and exits; zinit follows it. Tests that check much
	// data (socket-tcpbuf*) take tens of seconds on a busy host.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to restored init %d: %v", pid, err)
	}
	if !waitExited(pid, 90*time.Second) {
		t.Fatalf("restored test did not end within 90s of SIGTERM\n%s", c.report())
	}
	out, err := os.ReadFile(c.outfile())
	if err != nil || !bytes.Contains(out, []byte("PASS")) {
		t.Fatalf("test did not pass after restore\n%s", c.report())
	}
}

// crtoolCR dumps with crtool, which kills the container, and restores the
// archive.
func crtoolCR(t *testing.T, c *container, opts []string) int {
	archive := filepath.Join(c.dir, "dump.tar")
	c.run(t, c.crtool(append([]string{"dump", "--pid", strconv.Itoa(c.pid), "-f", archive, "--runtime-root", c.runcRoot, "--work-dir", c.dir}, opts...)...))
	// The container was killed; a large one takes a moment to go.
	if !waitExited(c.pid, 10*time.Second) {
		t.Fatalf("crtool dump left the container's init %d running", c.pid)
	}
	out := c.run(t, c.crtool(append([]string{"restore", "-f", archive, "--work-dir", c.dir, "--log", c.log}, opts...)...))
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("crtool restore printed %q, want a PID", out)
	}
	return pid
}

// runcCR is the control: runc checkpoint and runc restore with the same
// CRIU.
func runcCR(t *testing.T, c *container, opts []string) int {
	images := filepath.Join(c.dir, "images")
	args := append([]string{"--criu", env.criu, "checkpoint", "--image-path", images, "--work-path", c.dir}, opts...)
	c.run(t, c.runcCmd(append(args, c.id)...))
	args = append([]string{"--criu", env.criu, "restore", "-d", "--image-path", images, "--work-path", c.dir, "--bundle", c.bundle}, opts...)
	cmd := c.runcCmd(append(args, c.id)...)
	c.supervise(t, cmd)
	c.run(t, cmd)
	return c.runcPid(t)
}

// container is a runc container that runs one zdtm test under zinit. All
// it creates has a unique name and goes when the test ends, also on
// failure.
type container struct {
	name     string // the zdtm test
	id       string
	dir      string
	bundle   string
	rootfs   string
	runcRoot string
	netns    string
	cgroup   string
	log      string // the container's stdio
	pid      int
	lastCmd  string // stderr of the last crtool or runc command
	// closeAfterStart are the container's ends of its stdio pipes.
	closeAfterStart []*os.File
}

const cgroupParent = "crtool-zdtm"

func startContainer(t *testing.T, name string) *container {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	c := &container{name: name, id: "zd-" + hex.EncodeToString(b), dir: t.TempDir()}
	c.bundle = filepath.Join(c.dir, "bundle")
	c.rootfs = filepath.Join(c.bundle, "rootfs")
	c.runcRoot = filepath.Join(c.dir, "runc")
	c.cgroup = "/" + cgroupParent + "/" + c.id
	c.log = filepath.Join(c.dir, "stdio.log")
	c.netns = c.id
	t.Cleanup(func() { c.cleanup(t) })

	for _, d := range []string{"dev", "proc", "sys", "tmp", "zdtm"} {
		if err := os.MkdirAll(filepath.Join(c.rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, filepath.Join(env.build, "zinit"), filepath.Join(c.rootfs, "zinit"))
	copyFile(t, filepath.Join(env.build, name, name), filepath.Join(c.rootfs, "zdtm", name))
	cmdline, err := os.ReadFile(filepath.Join(env.build, name, "run.cmd"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "add", c.netns).CombinedOutput(); err != nil {
		c.netns = ""
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "-n", c.netns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("loopback up: %v: %s", err, out)
	}
	args := append([]string{"/zinit", "zinit.ready", name + ".pid"}, strings.Fields(string(cmdline))...)
	if err := writeSpec(filepath.Join(c.bundle, "config.json"), c, args); err != nil {
		t.Fatal(err)
	}

	cmd := c.runcCmd("run", "-d", "--bundle", c.bundle, c.id)
	c.supervise(t, cmd)
	c.run(t, cmd)
	c.pid = c.runcPid(t)
	ready := filepath.Join(c.rootfs, "zdtm", "zinit.ready")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return c
		}
		if testutil.Exited(c.pid) {
			t.Fatalf("test did not start\n%s", c.report())
		}
		if time.Now().After(deadline) {
			t.Fatalf("test not ready after 30s\n%s", c.report())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeSpec writes the container's config: zinit as root with every
// capability the host's root has, no masked or read-only paths (zdtm tests
// poke /proc and /sys), new pid, mount, ipc and uts namespaces, the test's
// network namespace and cgroup.
func writeSpec(path string, c *container, args []string) error {
	caps, err := hostCapabilities()
	if err != nil {
		return err
	}
	s := specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: c.id,
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"},
			Cwd:  "/zdtm",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: c.cgroup,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace, Path: "/run/netns/" + c.netns},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
			},
		},
	}
	b, err := json.MarshalIndent(&s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// hostCapabilities lists the capabilities in this process's bounding set:
// a container cannot get more (here root may lack CAP_SYS_RESOURCE).
func hostCapabilities() ([]string, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			if caps := capability.FromHex(strings.TrimSpace(v)); caps != nil {
				return caps, nil
			}
			return nil, fmt.Errorf("CapBnd %q in /proc/self/status does not parse", v)
		}
	}
	return nil, errors.New("no CapBnd in /proc/self/status")
}

// supervise gives cmd (runc run or restore) pipes for the container's
// stdio, as a container supervisor does: runc hands pipes over to the
// container and back to a restored one, CRIU cannot reopen a host file the
// container does not see. What the container writes goes to c.log.
func (c *container) supervise(t *testing.T, cmd *exec.Cmd) {
	log, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(log, outR); outR.Close(); log.Close() }()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, outW
	// Our copies of the container's ends close once it has them; the stdin
	// writer stays open until the test ends, so the container reads no EOF.
	c.closeAfterStart = append(c.closeAfterStart, inR, outW)
	t.Cleanup(func() { inW.Close() })
}

func (c *container) runcCmd(args ...string) *exec.Cmd {
	return exec.Command(env.runc, append([]string{"--root", c.runcRoot}, args...)...)
}

func (c *container) crtool(args ...string) *exec.Cmd {
	return exec.Command(env.crtool, args...)
}

// run runs cmd with a time limit and returns its stdout; a failure ends
// the test with its output.
func (c *container) run(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	done := make(chan error, 1)
	err := cmd.Start()
	for _, f := range c.closeAfterStart {
		f.Close()
	}
	c.closeAfterStart = nil
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		err = fmt.Errorf("killed after 1m: %w", <-done)
	}
	c.lastCmd = strings.Join(cmd.Args, " ") + "\n" + stderr.String()
	if err != nil {
		t.Fatalf("%v\n%s", err, c.report())
	}
	return stdout.String()
}

func (c *container) runcPid(t *testing.T) int {
	t.Helper()
	out, err := c.runcCmd("state", c.id).Output()
	if err != nil {
		t.Fatalf("runc state %s: %v", c.id, err)
	}
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	return st.Pid
}

func (c *container) outfile() string {
	return filepath.Join(c.rootfs, "zdtm", c.name+".out")
}

// report gathers what explains a failure: the last command's stderr, the
// container's stdio and the test's own out file.
func (c *container) report() string {
	var b strings.Builder
	if c.lastCmd != "" {
		fmt.Fprintf(&b, "--- %s", c.lastCmd)
	}
	for _, p := range []string{c.log, c.outfile(), c.outfile() + ".inprogress"} {
		if out, err := os.ReadFile(p); err == nil && len(out) > 0 {
			fmt.Fprintf(&b, "--- %s\n%s", p, out)
		}
	}
	// CRIU's logs (runc's work path, crtool's kept work directory): their
	// errors name the cause.
	logs, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	more, _ := filepath.Glob(filepath.Join(c.dir, "*", "*", "*.log"))
	for _, p := range append(logs, more...) {
		if p == c.log {
			continue
		}
		out, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var errs []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "Error") || strings.Contains(l, "Warn") {
				errs = append(errs, l)
			}
		}
		if len(errs) > 10 {
			errs = errs[len(errs)-10:]
		}
		fmt.Fprintf(&b, "--- %s (errors)\n%s\n", p, strings.Join(errs, "\n"))
	}
	return b.String()
}

// cleanup kills whatever runs in the container's cgroup (the original or a
// restored tree, which runc does not know), then removes the runc state,
// cgroups and network namespace.
func (c *container) cleanup(t *testing.T) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + c.cgroup)
	for _, d := range dirs {
		_ = os.WriteFile(filepath.Join(d, "freezer.state"), []byte("THAWED"), 0)
	}
	for i := 0; ; i++ {
		pids := cgroupPids(dirs)
		if len(pids) == 0 {
			break
		}
		if i == 500 {
			t.Errorf("processes of %s survive SIGKILL: %v", c.id, pids)
			break
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = c.runcCmd("delete", "-f", c.id).Run()
	for _, d := range dirs {
		removeCgroup(d)
	}
	if c.netns != "" {
		_ = exec.Command("ip", "netns", "del", c.netns).Run()
	}
}

// cgroupPids lists the processes in the cgroups dirs and below them.
func cgroupPids(dirs []string) []int {
	var out []int
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					out = append(out, n)
				}
			}
			return nil
		})
	}
	return out
}

// removeCgroup removes the cgroup d and the cgroups a test made below it,
// deepest first; an emptied cgroup can take a moment to become removable.
func removeCgroup(d string) {
	var all []string
	_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			all = append(all, p)
		}
		return nil
	})
	for i := len(all) - 1; i >= 0; i-- {
		for try := 0; try < 50; try++ {
			if err := os.Remove(all[i]); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// cgroupParents are the parents of the tests' cgroups, which go when the
// last test's cgroup has gone.
func cgroupParents() []string {
	p, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupParent)
	return p
}

// waitExited waits up to d for pid to exit.
func waitExited(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !testutil.Exited(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
