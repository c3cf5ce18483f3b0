package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// hostListing is what a restore could create on the host, for comparing
// before and after a dry run.
func hostListing(t *testing.T, c *container, work string) string {
	t.Helper()
	var parts []string
	netns, _ := os.ReadDir("/run/netns")
	for _, e := range netns {
		parts = append(parts, "netns "+e.Name())
	}
	parts = append(parts, "cgroups "+existing(c.cgroupDirs()))
	state, _ := os.ReadDir("/var/lib/crtool/containers")
	for _, e := range state {
		parts = append(parts, "state "+e.Name())
	}
	entries, _ := os.ReadDir(work)
	for _, e := range entries {
		parts = append(parts, "work "+e.Name())
	}
	sort.Strings(parts)
	return strings.Join(parts, "\n")
}

// TestDryRun checks an archive against the host without restoring it: for
// a restorable archive it says what it would create, for one that is not
// it lists every blocker at once (root missing, bridge missing, name
// taken), and in both cases nothing on the host changes.
func TestDryRun(t *testing.T) {
	l, c, _ := echoSetup(t, "tcp4")
	archive := c.dump("--tcp-established")
	recorded := c.rootfs
	moved := c.secondHost(t, l, false)
	// The dry run that passes finds the root where the archive says.
	if err := os.Rename(moved, recorded); err != nil {
		t.Fatal(err)
	}
	c.rootfs = recorded
	work := t.TempDir()

	t.Run("restorable", func(t *testing.T) {
		before := hostListing(t, c, work)
		r := crtool(t, "restore", "-f", archive, "--dry-run", "--tcp-established", "--work-dir", work, "--allow-host-path", c.dir)
		if r.code != 0 || !strings.Contains(r.stdout, "would restore") || !strings.Contains(r.stdout, "would create: network namespace /run/netns/crt-"+l.id) {
			t.Fatalf("dry run of a restorable archive: %s", r)
		}
		if after := hostListing(t, c, work); after != before {
			t.Fatalf("the dry run changed the host:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	t.Run("blocked", func(t *testing.T) {
		// Three problems at once: the root filesystem moved away, the
		// bridge gone, the name's namespace taken.
		moved := filepath.Join(t.TempDir(), "moved")
		if err := os.Rename(c.rootfs, moved); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Rename(moved, c.rootfs) })
		mustRun(t, "ip", "-n", l.hub, "link", "del", l.bridge)
		taken := uniqueID("crt-taken-")
		mustRun(t, "ip", "netns", "add", taken)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", taken).Run() })

		before := hostListing(t, c, work)
		r := crtool(t, "restore", "-f", archive, "--dry-run", "--tcp-established", "--name", taken, "--work-dir", work, "--allow-host-path", c.dir)
		if r.code != 1 {
			t.Fatalf("dry run of a blocked archive: %s, want exit 1", r)
		}
		for _, want := range []string{
			"crtool: error: root filesystem " + c.rootfs + " recorded in the archive is not there: pass --root DIR",
			"crtool: error: network namespace " + taken + " already exists",
			"bridge " + l.bridge,
			"pass --create-bridge to create it",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("blockers lack %q:\n%s", want, r.stderr)
			}
		}
		if strings.Contains(r.stderr, "CreateBridge") || strings.Contains(r.stderr, "ReplayOptions") {
			t.Errorf("a Go name reached the user:\n%s", r.stderr)
		}
		if after := hostListing(t, c, work); after != before {
			t.Fatalf("the dry run changed the host:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		// The same blockers stop a real restore before it creates anything.
		r = crtool(t, "restore", "-f", archive, "--tcp-established", "--name", taken, "--work-dir", work, "--allow-host-path", c.dir)
		if r.code != 1 || strings.Count(r.stderr, "crtool: error:") < 3 {
			t.Fatalf("restore with blockers: %s, want exit 1 and every blocker", r)
		}
		if after := hostListing(t, c, work); after != before {
			t.Fatalf("the refused restore changed the host:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}
