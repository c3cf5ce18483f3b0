package restore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/testutil"
)

// referenceArchives are the checkpoint archives of FORMAT.md section 0
// (the busybox image beside them is no checkpoint).
var referenceArchives = []string{
	"bb2-httpd-gzip.tar.gz",
	"bb2-httpd-portable-gzip.tar.gz",
	"bbloop-criu411-gzip.tar.gz",
	"bbloop-portable-zstd.tar.zst",
	"nginx-gzip.tar.gz",
	"nginx-tcp-established-gzip.tar.gz",
	"nginx-zstd-default.tar.zst",
}

// referencePath is the path of a reference archive; a missing one skips
// the test, or fails it in CI.
func referencePath(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(testutil.RequireReference(t), "archives", name)
	_, err := os.Stat(p)
	testutil.Require(t, err == nil, fmt.Sprintf("reference archive %s: %v", name, err))
	return p
}

// tempStateDir points StateDir at a new directory for the test.
func tempStateDir(t *testing.T) string {
	t.Helper()
	old := StateDir
	StateDir = t.TempDir()
	t.Cleanup(func() { StateDir = old })
	return StateDir
}

// described unpacks and describes an archive as Run's first two steps do,
// in directories of the test.
func described(t *testing.T, opts Options) *restorer {
	t.Helper()
	if opts.WorkDir == "" {
		opts.WorkDir = t.TempDir()
	}
	r := &restorer{opts: opts}
	ctx := context.Background()
	if err := r.unpack(ctx); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	t.Cleanup(func() { _ = r.wd.Remove(); r.guard.Done(&r.rollback) })
	if err := r.describe(ctx); err != nil {
		t.Fatalf("describe: %v", err)
	}
	return r
}

// crtoolArchive writes an archive as crtool's dump lays it out: md as
// crtool.json beside CRIU's image directory (whose content restore does
// not read before CRIU runs).
func crtoolArchive(t *testing.T, md *format.Metadata) string {
	t.Helper()
	stage := t.TempDir()
	if err := os.Mkdir(filepath.Join(stage, format.CheckpointDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stage, format.CheckpointDir, format.InventoryImage), []byte("inventory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if md != nil {
		if err := format.WriteMetadata(stage, md); err != nil {
			t.Fatal(err)
		}
	}
	return packDir(t, stage)
}

// packDir writes dir as a gzip'd archive.
func packDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ckpt.tar.gz")
	if _, err := archive.WriteFile(context.Background(), out, dir, archive.WriteOptions{Compression: archive.Gzip}); err != nil {
		t.Fatal(err)
	}
	return out
}
