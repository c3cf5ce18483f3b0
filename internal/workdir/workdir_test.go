package workdir

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/testutil"
)

func TestKeepOnlyLeavesTheLog(t *testing.T) {
	d, err := New(t.TempDir(), "t-", "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"checkpoint/pages-1.img", "checkpoint/dump.log", "spec.dump", "sub/x"} {
		full := filepath.Join(d.Path, p)
		_ = os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log := d.Log("dump.log")
	if err := d.KeepOnly(log); err != nil {
		t.Fatal(err)
	}
	var left []string
	_ = filepath.WalkDir(d.Path, func(p string, e os.DirEntry, err error) error {
		if !e.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 1 || left[0] != log {
		t.Fatalf("left %v, want only %s", left, log)
	}
}

func TestKeepOnlyWithoutLogRemovesAll(t *testing.T) {
	d, err := New(t.TempDir(), "t-", "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	d.KeepOnly(d.Log("dump.log"))
	if _, err := os.Stat(d.Path); !os.IsNotExist(err) {
		t.Fatalf("work dir still there: %v", err)
	}
}

func TestMoveImages(t *testing.T) {
	d, err := New(t.TempDir(), "t-", "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d.Images, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.Images, "core-1.img"), []byte("img"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "kept")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.MoveImages(dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "core-1.img")); err != nil || string(b) != "img" {
		t.Fatalf("kept image: %q %v", b, err)
	}
}

// A mount left below the work directory (CRIU's cgroup yard, killed
// mid-way) must be detached, not emptied: what it shows belongs to the host.
func TestRemoveDetachesMountsBelow(t *testing.T) {
	testutil.RequireRoot(t)
	precious := t.TempDir()
	keep := filepath.Join(precious, "host-file")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := New(t.TempDir(), "t-", "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	yard := filepath.Join(d.Images, ".criu.cgyard")
	if err := os.MkdirAll(yard, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(precious, yard, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(yard, unix.MNT_DETACH) })
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("a file behind a mount in the work directory was removed: %v", err)
	}
	if _, err := os.Stat(d.Path); !os.IsNotExist(err) {
		t.Fatalf("work directory still there: %v", err)
	}
}
