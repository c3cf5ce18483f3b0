package safefs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRemoveTreeDeep removes a tree nested deeper than the descriptor
// limit, as an archive's rootfs-diff.tar can make it, with files, a
// symlink out of it and a directory without permissions along the way.
func TestRemoveTreeDeep(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	depth := int(lim.Cur) + 1000
	outside := t.TempDir()
	canary := filepath.Join(outside, "canary")
	if err := os.WriteFile(canary, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(top, 0o755); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's own cleanup could not remove the tree.
	t.Cleanup(func() { _ = RemoveTree(context.Background(), top) })
	fd, err := OpenDir(top)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < depth; i++ {
		if i%5000 == 0 {
			if err := unix.Symlinkat(outside, fd, "out"); err != nil {
				t.Fatal(err)
			}
			f, err := OpenAt(fd, "f", unix.O_CREAT|unix.O_WRONLY, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(f)
			if err := unix.Mkdirat(fd, "locked", 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := OpenSubdir(fd, "d")
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	if err := RemoveTree(context.Background(), top); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(top); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", top, err)
	}
	if _, err := os.Stat(canary); err != nil {
		t.Errorf("the file behind a symlink went: %v", err)
	}
	if err := RemoveTree(context.Background(), top); err != nil {
		t.Errorf("removing a missing tree: %v", err)
	}
}
