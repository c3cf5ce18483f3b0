package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// secondHost makes this host look, to a restore, like one that never saw
// the dumped container: it removes what the source host had — the runtime's
// container, its network namespace and the veth that led out of it, the
// container's whole cgroup tree including parents nothing else uses, and
// (with podmanParent) Podman's /libpod_parent when empty — and moves its
// root filesystem. Every migration test restores through it, so none passes
// only because the source's state was still there. It returns the moved
// root filesystem.
func (c *container) secondHost(t *testing.T, l *lan, podmanParent bool) string {
	t.Helper()
	if c.netnsName != "" {
		mustRun(t, "ip", "netns", "del", c.netnsName)
	} else if l != nil {
		mustRun(t, "ip", "netns", "del", "crt-"+l.id)
	}
	if c.runcRoot != "" {
		_ = exec.Command(env.runc, "--root", c.runcRoot, "delete", "-f", c.id).Run()
	}
	waitFor(t, 10*time.Second, "the container's processes to go", func() bool { return len(cgroupTreeProcs(c.cgroupPath)) == 0 })
	// The parents go too, as far as they are empty: a fresh host has none.
	for p := c.cgroupPath; p != "/" && p != "."; p = filepath.Dir(p) {
		if len(cgroupTreeProcs(p)) > 0 {
			break
		}
		if others, _ := filepath.Glob("/sys/fs/cgroup/*" + p + "/*/cgroup.procs"); p != c.cgroupPath && len(others) > 0 {
			break // another test's container lives below this parent
		}
		if err := removeCgroupTree(p); err != nil {
			t.Fatalf("second host: remove cgroup %s: %v", p, err)
		}
	}
	if left := cgroupDirsOf(c.cgroupPath); len(left) > 0 {
		t.Fatalf("second host: cgroup %s still there: %v", c.cgroupPath, left)
	}
	if podmanParent {
		const parent = "/libpod_parent"
		if len(cgroupTreeProcs(parent)) == 0 {
			if err := removeCgroupTree(parent); err != nil {
				t.Fatalf("second host: remove %s: %v", parent, err)
			}
		}
	}
	if l != nil {
		// The kernel removes a deleted namespace's devices asynchronously.
		waitFor(t, 10*time.Second, "the container's veth to go with its namespace", func() bool {
			out, err := exec.Command("ip", "-n", l.hub, "-o", "link").Output()
			return err == nil && !strings.Contains(string(out), fmt.Sprintf("v%s2", l.id))
		})
	}
	moved := filepath.Join(t.TempDir(), "moved-rootfs")
	if err := os.Rename(c.rootfs, moved); err != nil {
		t.Fatalf("second host: move the root filesystem: %v", err)
	}
	c.rootfs = moved
	return moved
}
