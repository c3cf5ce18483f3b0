package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/network"
)

// containerSpec describes a test container.
type containerSpec struct {
	args  []string          // process args (busybox applets are in /bin)
	stdio string            // "file" (default): a log file; "pipe": pipes read by the test; "null": /dev/null
	tmpfs []string          // extra tmpfs mounts
	files map[string]string // files to create in the rootfs
	// netnsPath joins an existing namespace instead of creating one.
	netnsPath string
	// rootfsFrom copies this root filesystem (an image's) instead of
	// building the busybox one.
	rootfsFrom string
	// cgroupPath puts the container in this cgroup instead of
	// /crtool-test/ID; the test removes what it makes.
	cgroupPath string
}

// container is a runc container started by a test. Everything it creates
// has a unique name and is removed when the test ends, also on failure.
type container struct {
	t          *testing.T
	id         string
	dir        string
	bundle     string
	rootfs     string
	runcRoot   string
	netnsName  string // "" when the test supplied the namespace
	netnsPath  string
	cgroupPath string
	log        string
	stdout     *syncBuffer
	pid        int
}

func uniqueID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// startContainer builds a busybox bundle and runs it with runc, in its own
// network namespace (loopback up) and cgroup.
func startContainer(t *testing.T, spec containerSpec) *container {
	t.Helper()
	requireEnv(t)
	c := &container{t: t, id: uniqueID("crt-")}
	c.dir = t.TempDir()
	c.bundle = filepath.Join(c.dir, "bundle")
	c.rootfs = filepath.Join(c.bundle, "rootfs")
	c.runcRoot = filepath.Join(c.dir, "runc")
	c.cgroupPath = "/crtool-test/" + c.id
	if spec.cgroupPath != "" {
		c.cgroupPath = spec.cgroupPath
	}
	c.log = filepath.Join(c.dir, "container.log")
	t.Cleanup(c.cleanup)

	if spec.rootfsFrom != "" {
		if err := os.MkdirAll(c.bundle, 0o755); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "cp", "-a", spec.rootfsFrom, c.rootfs)
	} else {
		buildRootfs(t, c.rootfs, spec.files)
	}
	if spec.netnsPath != "" {
		c.netnsPath = spec.netnsPath
	} else {
		c.netnsName = c.id
		c.netnsPath = "/run/netns/" + c.netnsName
		mustRun(t, "ip", "netns", "add", c.netnsName)
		mustRun(t, "ip", "-n", c.netnsName, "link", "set", "lo", "up")
	}
	writeConfig(t, c, spec)

	cmd := exec.Command(env.runc, "--root", c.runcRoot, "run", "-d", "--bundle", c.bundle, c.id)
	switch spec.stdio {
	case "", "file":
		f, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	case "pipe":
		// The test plays the supervisor: it holds the pipes' other ends.
		c.stdout = &syncBuffer{}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = io.Copy(c.stdout, r); r.Close() }()
		defer w.Close()
		cmd.Stdout, cmd.Stderr = w, w
		stdin, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		cmd.Stdin = stdin
	case "null":
	}
	var stderr bytes.Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(c.log)
		t.Fatalf("runc run %s: %v: %s%s", c.id, err, stderr.String(), b)
	}
	c.pid = c.runcPid()
	t.Logf("container %s: pid %d, netns %s, cgroup %s", c.id, c.pid, c.netnsPath, c.cgroupPath)
	return c
}

// buildRootfs makes a busybox root filesystem with every applet in /bin.
func buildRootfs(t *testing.T, rootfs string, files map[string]string) {
	t.Helper()
	for _, d := range []string{"bin", "tmp", "proc", "sys", "dev", "etc", "www", "run"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(env.busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(env.busybox, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	base := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/:/bin/sh\n",
		"etc/group":      "root:x:0:\n",
		"www/index.html": "<h1>crtool test</h1>\n",
	}
	for p, content := range files {
		base[p] = content
	}
	for p, content := range base {
		full := filepath.Join(rootfs, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// writeConfig writes config.json: runc's default spec with the test's
// process, a private network namespace and cgroup, and an open-files limit
// root may set on hosts without CAP_SYS_RESOURCE.
func writeConfig(t *testing.T, c *container, spec containerSpec) {
	t.Helper()
	mustRun(t, env.runc, "spec", "--bundle", c.bundle)
	p := filepath.Join(c.bundle, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = spec.args
	proc["rlimits"] = []map[string]any{{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}}
	cfg["root"] = map[string]any{"path": "rootfs", "readonly": false}
	cfg["hostname"] = c.id
	linux := cfg["linux"].(map[string]any)
	linux["cgroupsPath"] = c.cgroupPath
	for _, n := range linux["namespaces"].([]any) {
		ns := n.(map[string]any)
		if ns["type"] == "network" {
			ns["path"] = c.netnsPath
		}
	}
	mounts := cfg["mounts"].([]any)
	for _, m := range spec.tmpfs {
		mounts = append(mounts, map[string]any{"destination": m, "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=755", "size=16m"}})
	}
	cfg["mounts"] = mounts
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (c *container) runcPid() int {
	c.t.Helper()
	out, err := exec.Command(env.runc, "--root", c.runcRoot, "state", c.id).Output()
	if err != nil {
		c.t.Fatalf("runc state %s: %v", c.id, err)
	}
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		c.t.Fatal(err)
	}
	return st.Pid
}

// cgroupDirs lists the container's cgroup directories in every hierarchy.
func (c *container) cgroupDirs() []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + c.cgroupPath)
	return dirs
}

func (c *container) freezerDir() string { return "/sys/fs/cgroup/freezer" + c.cgroupPath }

// freezerState reads the container's v1 freezer state.
func (c *container) freezerState() string {
	b, err := os.ReadFile(filepath.Join(c.freezerDir(), "freezer.state"))
	if err != nil {
		return "missing"
	}
	return strings.TrimSpace(string(b))
}

// pids lists the processes in the container's cgroup.
func (c *container) pids() []int {
	b, err := os.ReadFile(filepath.Join(c.freezerDir(), "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

// killAll kills every process in the container's cgroup (the original's or
// a restored one's, which runc does not know) and waits for them to go.
func (c *container) killAll() {
	_ = os.WriteFile(filepath.Join(c.freezerDir(), "freezer.state"), []byte("THAWED"), 0)
	for i := 0; i < 500; i++ {
		pids := c.pids()
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Errorf("processes of %s survive SIGKILL: %v", c.id, c.pids())
}

func (c *container) cleanup() {
	// A restore under the container's own name (the default) left a
	// record, and pieces, that crtool rm removes.
	_ = exec.Command(env.crtool, "rm", "-f", "-t", "0", c.id).Run()
	c.killAll()
	_ = exec.Command(env.runc, "--root", c.runcRoot, "delete", "-f", c.id).Run()
	for _, d := range c.cgroupDirs() {
		for i := 0; i < 50; i++ {
			if err := os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The shared parent goes once the last test's cgroup has gone.
		_ = os.Remove(filepath.Dir(d))
	}
	if c.netnsName != "" {
		_ = exec.Command("ip", "netns", "del", c.netnsName).Run()
	}
}

// result of a crtool run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// crtool runs the binary under test.
func crtool(t *testing.T, args ...string) result {
	t.Helper()
	return crtoolEnv(t, nil, args...)
}

// crtoolEnv runs the binary under test with extra environment variables.
func crtoolEnv(t *testing.T, extraEnv []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.crtool, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run crtool %v: %v", args, err)
	}
	t.Logf("crtool %s: exit %d\n%s", strings.Join(args, " "), r.code, strings.TrimSpace(r.stderr))
	return r
}

// dump checkpoints the container into a new archive and returns its path.
func (c *container) dump(extra ...string) string {
	c.t.Helper()
	archive := filepath.Join(c.dir, uniqueID("dump-")+".tar.gz")
	args := append([]string{"dump", "--pid", strconv.Itoa(c.pid), "-f", archive, "--runtime-root", c.runcRoot}, extra...)
	if r := crtool(c.t, args...); r.code != 0 {
		c.t.Fatalf("dump failed: %s", r)
	}
	return archive
}

// restoredAs finds the restored container's name in restore's summary.
var restoredAs = regexp.MustCompile(`crtool: restored (\S+) as pid`)

// restore restores an archive and returns the new init's PID, which
// becomes the container's PID. The restored container is removed with
// crtool rm when the test ends, its record and all.
func (c *container) restore(archive string, extra ...string) int {
	c.t.Helper()
	// The container's stdio log is in its test directory, which the
	// operator (the test) hands back to it.
	r := crtool(c.t, append([]string{"restore", "-f", archive, "--allow-host-path", c.dir}, extra...)...)
	if r.code != 0 {
		c.t.Fatalf("restore failed: %s", r)
	}
	if m := restoredAs.FindStringSubmatch(r.stderr); m != nil {
		c.t.Cleanup(func() { _ = exec.Command(env.crtool, "rm", "-f", "-t", "0", m[1]).Run() })
	}
	pid, err := strconv.Atoi(strings.TrimSpace(r.stdout))
	if err != nil {
		c.t.Fatalf("restore printed %q, want a PID", r.stdout)
	}
	c.pid = pid
	return pid
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialIn opens a TCP connection from inside the network namespace at path.
func dialIn(nsPath, proto, addr string) (net.Conn, error) {
	var conn net.Conn
	err := network.Do(nsPath, func() error {
		var err error
		conn, err = net.DialTimeout(proto, addr, 3*time.Second)
		return err
	})
	return conn, err
}

// httpGet fetches url from inside the network namespace at nsPath.
func httpGet(nsPath, url string) (string, error) {
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialIn(nsPath, network, addr)
			},
		},
	}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
