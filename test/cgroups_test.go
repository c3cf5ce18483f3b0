package test

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/testutil"
)

// cgroupDirsOf lists cgroup p's directory in every hierarchy that has it.
func cgroupDirsOf(p string) []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + p)
	return dirs
}

// cgroupTreeProcs lists the processes anywhere in cgroup p's tree, in any
// hierarchy.
func cgroupTreeProcs(p string) []string {
	var pids []string
	for _, d := range cgroupDirsOf(p) {
		_ = filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.Name() == "cgroup.procs" {
				b, _ := os.ReadFile(path)
				pids = append(pids, strings.Fields(string(b))...)
			}
			return nil
		})
	}
	return pids
}

// removeCgroupTree removes cgroup p and everything below it in every
// hierarchy, children first, as a host that never had it would be.
func removeCgroupTree(p string) error {
	var errs []error
	for _, d := range cgroupDirsOf(p) {
		var dirs []string
		_ = filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// checkParentCpuset checks that the v1 cpuset parent of the restored
// container's cgroup p has cpus and memory nodes, which CRIU's write of the
// recorded ones needed.
func checkParentCpuset(t *testing.T, p string) {
	t.Helper()
	parent := filepath.Join("/sys/fs/cgroup/cpuset", filepath.Dir(p))
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(parent, f))
		if err != nil || strings.TrimSpace(string(b)) == "" {
			t.Errorf("%s/%s = %q, %v; want the host's values", parent, f, b, err)
		}
	}
}

// inCgroup reports whether process pid is in cgroup p of the v1 cpuset
// hierarchy.
func inCgroup(pid int, p string) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(l, ":cpuset:"+p) {
			return true
		}
	}
	return false
}

// TestRestoreWithoutParentCgroups: on a host that never had the container's
// cgroup tree, parents included, a crtool archive restores and the counter
// continues; a restore that fails first removes every cgroup it made.
func TestRestoreWithoutParentCgroups(t *testing.T) {
	requireEnv(t)
	top := "/" + uniqueID("crtool-test-")
	t.Cleanup(func() {
		if err := removeCgroupTree(top); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	cg := top + "/a/b/ct"
	c := startContainer(t, containerSpec{args: []string{"/bin/sh", "-c", counterScript}, cgroupPath: cg})
	before := c.waitCount(50)
	origPid := c.pid
	archive := c.dump()
	waitFor(t, 5*time.Second, "the dumped container to be gone", func() bool { return testutil.Exited(origPid) && len(c.pids()) == 0 })

	if err := removeCgroupTree(top); err != nil {
		t.Fatal(err)
	}
	if left := cgroupDirsOf(top); len(left) > 0 {
		t.Fatalf("the source's cgroups are still there: %v", left)
	}

	// CRIU fails on a root without the container's files: the rollback
	// removes the container's cgroup and the parents made for it. The
	// failed restore keeps its log in the work directory.
	r := crtool(t, "restore", "-f", archive, "--root", t.TempDir(), "--work-dir", t.TempDir(), "--allow-host-path", c.dir)
	if r.code == 0 {
		t.Fatalf("restore onto an empty root succeeded: %s", r)
	}
	if left := cgroupDirsOf(top); len(left) > 0 {
		t.Fatalf("the failed restore left cgroups: %v", left)
	}

	pid := c.restore(archive)
	if after := c.ask(); after < before {
		t.Fatalf("counter after restore = %d, before dump = %d: it started over", after, before)
	}
	if !inCgroup(pid, cg) {
		t.Errorf("restored pid %d is not in cpuset cgroup %s", pid, cg)
	}
	checkParentCpuset(t, cg)
}

// counterAtDump reads /tmp/counter from a Podman archive's
// rootfs-diff.tar: what the container had written when it was dumped.
func counterAtDump(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := -1
	err = archive.Walk(context.Background(), f, func(hdr *tar.Header, body io.Reader) error {
		if hdr.Name != format.RootfsDiffTar {
			return nil
		}
		tr := tar.NewReader(body)
		for {
			h, err := tr.Next()
			if err != nil {
				return err
			}
			if strings.TrimPrefix(h.Name, "./") == "tmp/counter" {
				b, _ := io.ReadAll(tr)
				_, err := fmt.Sscan(string(b), &n)
				if err != nil {
					return err
				}
				return archive.ErrStop
			}
		}
	})
	if err != nil || n < 0 {
		t.Fatalf("tmp/counter in %s's %s: %v", path, format.RootfsDiffTar, err)
	}
	return n
}

// TestRestorePodmanArchiveWithoutLibpodParent: a Podman archive restores on
// a host where Podman never ran, which has no /libpod_parent: the test
// removes it (when nothing uses it) and makes sure it is gone first.
func TestRestorePodmanArchiveWithoutLibpodParent(t *testing.T) {
	requireEnv(t)
	ref := testutil.RequireReference(t)
	path := filepath.Join(ref, "archives", "bbloop-portable-zstd.tar.zst")
	root := imageRootfs(t)
	const parent = "/libpod_parent"
	// The restore creates /libpod_parent. Where the host had none it goes
	// again once empty; where it had one, the restore's stays in its
	// place. This runs after the container's own cleanup, registered
	// below.
	hadParent := len(cgroupDirsOf(parent)) > 0
	t.Cleanup(func() {
		if !hadParent && len(cgroupTreeProcs(parent)) == 0 {
			if err := removeCgroupTree(parent); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	c := foreignContainer(t, path)
	if filepath.Dir(c.cgroupPath) != parent {
		t.Fatalf("archive's cgroup %s is not below %s", c.cgroupPath, parent)
	}
	if pids := cgroupTreeProcs(parent); len(pids) > 0 {
		testutil.Require(t, false, fmt.Sprintf("%s holds processes %v (Podman containers run on this host); the test needs a host without it", parent, pids))
	}
	if err := removeCgroupTree(parent); err != nil {
		t.Fatal(err)
	}
	if left := cgroupDirsOf(parent); len(left) > 0 {
		t.Fatalf("%s is still there: %v", parent, left)
	}

	atDump := counterAtDump(t, path)
	name := uniqueID("bbloop-")
	cleanupForeign(t, c, name)
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	pid := c.restore(path, "--root", root, "--netns", "/run/netns/"+name, "--name", name)

	counter := filepath.Join("/var/lib/crtool/containers", name, "merged", "tmp/counter")
	waitFor(t, 10*time.Second, "the loop to count on", func() bool {
		// The shell truncates the file before it writes: an empty read
		// says nothing.
		b, err := os.ReadFile(counter)
		if err != nil || strings.TrimSpace(string(b)) == "" {
			return false
		}
		n := fileCounter(counter)
		if n < atDump {
			t.Fatalf("counter %d after restore, %d at the dump: it started over", n, atDump)
		}
		return n > atDump+1
	})
	if !inCgroup(pid, c.cgroupPath) {
		t.Errorf("restored pid %d is not in cpuset cgroup %s", pid, c.cgroupPath)
	}
	checkParentCpuset(t, c.cgroupPath)
}
