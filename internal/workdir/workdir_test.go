package workdir

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/safefs"
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

// deepTree nests directories below dir deeper than the descriptor limit,
// as a crafted archive can.
func deepTree(t *testing.T, dir string) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < int(lim.Cur)+1000; i++ {
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
}

// TestDeepTreeRemoved: a work directory holding a tree nested deeper than
// RLIMIT_NOFILE still goes, all of it or all but the log.
func TestDeepTreeRemoved(t *testing.T) {
	for _, keepLog := range []bool{false, true} {
		parent := t.TempDir()
		d, err := New(parent, "crtool-test-", "checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = safefs.RemoveTree(context.Background(), d.Path) })
		if err := os.Mkdir(d.Images, 0o700); err != nil {
			t.Fatal(err)
		}
		deepTree(t, d.Images)
		log := d.Log("restore.log")
		if err := os.WriteFile(log, []byte("Error (criu): x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if keepLog {
			err = d.KeepOnly(log)
		} else {
			err = d.Remove()
		}
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		_ = filepath.WalkDir(parent, func(p string, e os.DirEntry, err error) error {
			if p != parent && p != d.Path && p != d.Images && p != log {
				left = append(left, p)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("keepLog %v: left %d paths, first %s", keepLog, len(left), left[0])
		}
		if _, err := os.Stat(log); (err == nil) != keepLog {
			t.Errorf("keepLog %v: log there: %v", keepLog, err == nil)
		}
	}
}
