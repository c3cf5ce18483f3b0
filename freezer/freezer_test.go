package freezer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/testutil"
)

// hierarchies are the two kinds of freezer this host offers: the v1
// controller and the v2 core of the unified hierarchy.
var hierarchies = []struct {
	name string
	root string
}{
	{"v1", "/sys/fs/cgroup/freezer"},
	{"v2", "/sys/fs/cgroup/unified"},
}

func hierarchyRoot(t *testing.T, name, root string) string {
	t.Helper()
	if _, err := os.Stat(root); err != nil {
		// A pure v2 host mounts the unified hierarchy at /sys/fs/cgroup.
		if name == "v2" {
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
				return "/sys/fs/cgroup"
			}
		}
		testutil.Require(t, false, "no cgroup "+name+" hierarchy at "+root)
	}
	return root
}

// newCgroup makes a uniquely named cgroup and removes it after the test,
// killing whatever is left in it.
func newCgroup(t *testing.T, root string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dir := filepath.Join(root, "crtool-freezer-test-"+hex.EncodeToString(b))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if f, err := New(dir); err == nil {
			_ = f.Thaw()
		}
		for i := 0; i < 100; i++ {
			b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			pids := strings.Fields(string(b))
			if len(pids) == 0 {
				break
			}
			for _, p := range pids {
				if n, err := strconv.Atoi(p); err == nil {
					_ = killPid(n)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	return dir
}

func killPid(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// startTree starts a shell with a child that writes an increasing counter to
// a file, inside cgroup dir, and returns the counter file.
func startTree(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "counter")
	script := `(i=0; while :; do i=$((i+1)); echo $i > ` + out + `.tmp; mv ` + out + `.tmp ` + out + `; sleep 0.01; done) & wait`
	cmd := exec.Command("/bin/sh", "-c", "echo $$ > "+filepath.Join(dir, "cgroup.procs")+" && exec /bin/sh -c '"+script+"'")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Every process of the tree goes, not only the shell: the loop's
	// subshell would go on writing into the directory being removed.
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		for i := 0; i < 500; i++ {
			b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			pids := strings.Fields(string(b))
			if len(pids) == 0 {
				return
			}
			for _, p := range pids {
				if pid, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	waitFor(t, func() bool { _, err := os.Stat(out); return err == nil })
	return out
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached in 5s")
}

func readCounter(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("counter %q: %v", b, err)
	}
	return n
}

func TestFreezeThawRealTree(t *testing.T) {
	testutil.RequireRoot(t)
	for _, h := range hierarchies {
		t.Run(h.name, func(t *testing.T) {
			dir := newCgroup(t, hierarchyRoot(t, h.name, h.root))
			counter := startTree(t, dir)
			f, err := New(dir)
			if err != nil {
				t.Fatal(err)
			}
			if f.V2() != (h.name == "v2") {
				t.Fatalf("V2() = %v for %s", f.V2(), h.name)
			}
			took, err := f.Freeze(context.Background(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("froze in %v", took)
			if st, _ := f.State(); st != Frozen {
				t.Fatalf("state after Freeze = %s", st)
			}
			before := readCounter(t, counter)
			time.Sleep(200 * time.Millisecond)
			if after := readCounter(t, counter); after != before {
				t.Fatalf("counter moved while frozen: %d -> %d", before, after)
			}
			if err := f.Thaw(); err != nil {
				t.Fatal(err)
			}
			if st, _ := f.State(); st != Thawed {
				t.Fatalf("state after Thaw = %s", st)
			}
			waitFor(t, func() bool { return readCounter(t, counter) > before })
		})
	}
}

// fakeV2 builds a directory that looks like a cgroup v2 directory whose
// tasks never finish freezing: cgroup.events keeps saying "frozen 0".
func fakeV2(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFreezeStuckThawsAgain(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		timeout time.Duration
		want    error
	}{
		{"timeout", context.Background(), 30 * time.Millisecond, ErrTimeout},
		{"cancelled", cancelled, time.Minute, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fakeV2(t)
			f, err := New(dir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Freeze(tc.ctx, tc.timeout)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Freeze error = %v, want %v", err, tc.want)
			}
			b, _ := os.ReadFile(filepath.Join(dir, "cgroup.freeze"))
			if strings.TrimSpace(string(b)) != "0" {
				t.Fatalf("cgroup.freeze = %q after a failed freeze, want 0 (thawed)", b)
			}
		})
	}
}

func TestFreezeRealTimeoutThaws(t *testing.T) {
	testutil.RequireRoot(t)
	// A zero timeout cannot be met by a real tree of several tasks unless
	// the kernel freezes it within the first poll; either outcome must leave
	// the cgroup thawed or frozen consistently with the returned error.
	dir := newCgroup(t, hierarchyRoot(t, "v1", "/sys/fs/cgroup/freezer"))
	counter := startTree(t, dir)
	f, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Freeze(context.Background(), 0)
	st, _ := f.State()
	switch {
	case err == nil && st != Frozen:
		t.Fatalf("Freeze succeeded but state is %s", st)
	case err != nil && st != Thawed:
		t.Fatalf("Freeze failed (%v) but state is %s, want THAWED", err, st)
	}
	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	before := readCounter(t, counter)
	waitFor(t, func() bool { return readCounter(t, counter) > before })
}

func TestNewRejectsNonCgroup(t *testing.T) {
	if _, err := New(t.TempDir()); err == nil {
		t.Fatal("New accepted a directory that is not a cgroup")
	}
	if _, err := New("/nonexistent/crtool"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("New(nonexistent) = %v, want ErrNotExist", err)
	}
}

func TestThawGoneCgroupIsNoop(t *testing.T) {
	dir := fakeV2(t)
	f, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := f.Thaw(); err != nil {
		t.Fatalf("Thaw of a removed cgroup: %v", err)
	}
}
