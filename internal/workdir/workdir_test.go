package workdir

import (
	"os"
	"path/filepath"
	"testing"
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
	d.KeepOnly(log)
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
