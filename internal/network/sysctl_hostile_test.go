package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/safefs"
	"github.com/crtool/crtool/internal/undo"
)

// escapeKey is the sysctl(8) key that, with "/" read as "." inside a
// component, climbs from /proc/sys/net to the file p.
func escapeKey(p string) string {
	parts := []string{"net", "//", "//", "//"}
	for _, c := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		parts = append(parts, strings.ReplaceAll(c, ".", "/"))
	}
	return strings.Join(parts, ".")
}

// TestReplayRefusesHostileSysctls replays archive sysctls that name files
// outside the namespace's net.* tree and checks that nothing is written and
// nothing is created.
func TestReplayRefusesHostileSysctls(t *testing.T) {
	e := newEnv(t)
	_, path := e.netns("s")
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("canary"), 0o600); err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, sysctls := range []map[string]string{
		{escapeKey(victim): "owned"},
		// The current name: harmless should the check ever be missing.
		{"kernel.hostname": host},
		{"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0/../../../../../..": "1"},
	} {
		cfg := &format.Config{Sysctls: sysctls}
		var rollback undo.Stack
		err := Replay(path, cfg, ReplayOptions{}, &rollback)
		if err == nil {
			t.Fatalf("Replay accepted %v", sysctls)
		}
		if msg := err.Error(); !strings.Contains(msg, "network.sysctls") || strings.Contains(msg, "\n") {
			t.Errorf("error %q: want one line naming network.sysctls", msg)
		}
		if rollback.Len() != 0 {
			t.Errorf("Replay of %v created something before refusing", sysctls)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "canary" {
		t.Errorf("victim file now holds %q", b)
	}
	if h, _ := os.Hostname(); h != host {
		t.Errorf("hostname changed to %q", h)
	}
}

// TestWriteSysctlAtNoSymlinks writes below a directory standing for
// /proc/sys in which an interface directory is a symlink out of it.
func TestWriteSysctlAtNoSymlinks(t *testing.T) {
	root, out := t.TempDir(), t.TempDir()
	conf := filepath.Join(root, "net", "ipv4", "conf")
	if err := os.MkdirAll(filepath.Join(conf, "eth0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "eth0", "forwarding"), []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(out, filepath.Join(conf, "eth1")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "forwarding"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(out, "forwarding"), filepath.Join(conf, "eth0", "rp_filter")); err != nil {
		t.Fatal(err)
	}
	fd, err := safefs.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := writeSysctlAt(fd, "net.ipv4.conf.eth0.forwarding", "1"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(conf, "eth0", "forwarding")); string(b) != "1" {
		t.Errorf("forwarding = %q, want 1", b)
	}
	for _, k := range []string{"net.ipv4.conf.eth1.forwarding", "net.ipv4.conf.eth0.rp_filter", "net.//.//.//" + strings.ReplaceAll(out, "/", ".") + ".forwarding"} {
		if err := writeSysctlAt(fd, k, "1"); err == nil {
			t.Errorf("write %s succeeded", k)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(out, "forwarding")); string(b) != "canary" {
		t.Errorf("file outside the root now holds %q", b)
	}
}
