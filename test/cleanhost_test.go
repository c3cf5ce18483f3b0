package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/testutil"
)

// TestCleanHost: scripts/clean-host.sh removes the leftovers of earlier
// runs that nothing uses, and keeps what is in use, too young, or not
// named like a test's. The run is confined (CRTOOL_CLEAN_ONLY) to what the
// test made.
func TestCleanHost(t *testing.T) {
	testutil.RequireRoot(t)
	id := uniqueID("")
	var (
		emptyTop = "/crtool-test-" + id + "a"
		busyTop  = "/crtool-test-" + id + "b"
		keepTop  = "/crtool-keep-" + id
		staleNs  = "crt-" + id
		busyNs   = "crh-" + id
		keepNs   = "crtx-" + id
		staleTmp = filepath.Join(os.TempDir(), "crtool-dump-"+id)
		keepTmp  = filepath.Join(os.TempDir(), "crtool-bench-"+id)
		state    = filepath.Join("/var/lib/crtool/containers", "crtpod-"+id)
	)
	mounts, err := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
	if err != nil || len(mounts) == 0 {
		testutil.Require(t, false, "no cgroup hierarchies under /sys/fs/cgroup")
	}
	var sleepers []*exec.Cmd
	t.Cleanup(func() {
		for _, c := range sleepers {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		for _, top := range []string{emptyTop, busyTop, keepTop} {
			if err := removeCgroupTree(top); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		for _, ns := range []string{staleNs, busyNs, keepNs} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
		for _, d := range []string{staleTmp, keepTmp, state} {
			_ = os.RemoveAll(d)
		}
	})
	sleeper := func(args ...string) *exec.Cmd {
		c := exec.Command(args[0], args[1:]...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		sleepers = append(sleepers, c)
		return c
	}

	for _, m := range mounts {
		for _, p := range []string{emptyTop + "/a/b", busyTop + "/x", keepTop + "/a"} {
			if err := os.MkdirAll(filepath.Join(filepath.Dir(m), p), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A process in the freezer cgroup keeps that tree; the other
	// hierarchies' trees of the same name are empty.
	busy := sleeper("sleep", "300")
	busyFreezer := filepath.Join("/sys/fs/cgroup/freezer", busyTop, "x")
	if err := os.WriteFile(filepath.Join(busyFreezer, "cgroup.procs"), []byte(strconv.Itoa(busy.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{staleNs, busyNs, keepNs} {
		mustRun(t, "ip", "netns", "add", ns)
	}
	sleeper("ip", "netns", "exec", busyNs, "sleep", "300")
	waitFor(t, 5*time.Second, "a process in "+busyNs, func() bool {
		out, _ := exec.Command("ip", "netns", "pids", busyNs).Output()
		return strings.TrimSpace(string(out)) != ""
	})
	for _, d := range []string{filepath.Join(staleTmp, "checkpoint"), keepTmp, filepath.Join(state, "upper")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	run := func(env ...string) string {
		t.Helper()
		cmd := exec.Command("../scripts/clean-host.sh")
		cmd.Env = append(os.Environ(), append([]string{"CRTOOL_CLEAN_ONLY=" + id}, env...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("clean-host.sh: %v\n%s", err, out)
		}
		t.Logf("clean-host.sh %v:\n%s", env, out)
		return string(out)
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	// Everything is younger than the default age limit: all stays.
	run()
	for _, p := range []string{filepath.Join("/sys/fs/cgroup/memory", emptyTop), "/run/netns/" + staleNs, staleTmp, state} {
		if !exists(p) {
			t.Errorf("%s, made just now, was removed", p)
		}
	}

	run("CRTOOL_CLEAN_CUTOFF=" + strconv.FormatInt(time.Now().Unix()+60, 10))
	for _, m := range mounts {
		root := filepath.Dir(m)
		if p := filepath.Join(root, emptyTop); exists(p) {
			t.Errorf("empty cgroup tree %s stays", p)
		}
		if p := filepath.Join(root, keepTop, "a"); !exists(p) {
			t.Errorf("%s, not named like a test's, was removed", p)
		}
		if p := filepath.Join(root, busyTop); exists(p) != (root == "/sys/fs/cgroup/freezer") {
			t.Errorf("%s exists: %v; want it kept only where a process is in it", p, exists(p))
		}
	}
	if !exists(busyFreezer) {
		t.Errorf("the busy cgroup %s was removed", busyFreezer)
	}
	for ns, want := range map[string]bool{staleNs: false, busyNs: true, keepNs: true} {
		if got := exists("/run/netns/" + ns); got != want {
			t.Errorf("network namespace %s exists: %v, want %v", ns, got, want)
		}
	}
	for p, want := range map[string]bool{staleTmp: false, keepTmp: true, state: false} {
		if got := exists(p); got != want {
			t.Errorf("%s exists: %v, want %v", p, got, want)
		}
	}
}
