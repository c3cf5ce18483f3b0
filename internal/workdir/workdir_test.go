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

func TestRemoveKeepingLogKeepsOnlyTheLog(t *testing.T) {
	old := LogDir
	LogDir = t.TempDir()
	t.Cleanup(func() { LogDir = old })
	d, err := New(t.TempDir(), "t-", "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"checkpoint/pages-1.img", "checkpoint/dump.log", "spec.dump", "sub/x"} {
		full := filepath.Join(d.Path, p)
		_ = os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keep := KeptLog("dump")
	if err := d.RemoveKeepingLog(d.Log("dump.log"), keep); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); !os.IsNotExist(err) {
		t.Fatalf("work dir still there: %v", err)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "checkpoint/dump.log" {
		t.Fatalf("kept log: %q, %v", b, err)
	}
}

func TestRemoveKeepingLogWithoutLogKeepsNothing(t *testing.T) {
	old := LogDir
	LogDir = filepath.Join(t.TempDir(), "logs")
	t.Cleanup(func() { LogDir = old })
	d, err := New(t.TempDir(), "t-", "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveKeepingLog(d.Log("dump.log"), KeptLog("dump")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); !os.IsNotExist(err) {
		t.Fatalf("work dir still there: %v", err)
	}
	if _, err := os.Stat(LogDir); !os.IsNotExist(err) {
		t.Fatalf("log directory created without a log: %v", err)
	}
}

func TestPruneLogsKeepsTheNewest(t *testing.T) {
	dir := t.TempDir()
	names := []string{"restore-20260101T000003.000000-1.log", "dump-20260101T000001.000000-1.log", "dump-20260101T000002.000000-1.log", "restore-20260101T000004.000000-1.log"}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := pruneLogs(dir, 2); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if len(left) != 2 || left[0] != names[0] || left[1] != names[3] {
		t.Fatalf("left %v, want the two newest", left)
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
// RLIMIT_NOFILE still goes, all of it, the log kept elsewhere or not.
func TestDeepTreeRemoved(t *testing.T) {
	old := LogDir
	LogDir = t.TempDir()
	t.Cleanup(func() { LogDir = old })
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
		kept := KeptLog("restore")
		if keepLog {
			err = d.RemoveKeepingLog(log, kept)
		} else {
			err = d.Remove()
		}
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		_ = filepath.WalkDir(parent, func(p string, e os.DirEntry, err error) error {
			if p != parent {
				left = append(left, p)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("keepLog %v: left %d paths, first %s", keepLog, len(left), left[0])
		}
		if _, err := os.Stat(kept); (err == nil) != keepLog {
			t.Errorf("keepLog %v: log kept: %v", keepLog, err == nil)
		}
	}
}
