package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/safefs"
)

// TestEmptyHeadersCounted: a stream of "./" headers creates nothing, so
// only counting the headers themselves stops it; extraction and Walk
// (inspect) must give up at once.
func TestEmptyHeadersCounted(t *testing.T) {
	entries := make([]tarEntry, 0, 100_000)
	for i := 0; i < 100_000; i++ {
		entries = append(entries, dirEntry("./", 0o755))
	}
	archive := makeTar(t, true, entries...)
	start := time.Now()
	_, err := Extract(context.Background(), bytes.NewReader(archive), t.TempDir(), ExtractOptions{})
	if !errors.Is(err, ErrLimit) {
		t.Errorf("Extract: err = %v, want ErrLimit", err)
	}
	err = Walk(context.Background(), bytes.NewReader(archive), func(*tar.Header, io.Reader) error { return nil })
	if !errors.Is(err, ErrLimit) {
		t.Errorf("Walk: err = %v, want ErrLimit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusing took %v", d)
	}
	// Many real members are bounded by MaxFiles in Extract; duplicates of
	// one name too.
	dups := make([]tarEntry, 0, 100)
	for i := 0; i < 100; i++ {
		dups = append(dups, dirEntry("d/", 0o755))
	}
	if _, err := Extract(context.Background(), bytes.NewReader(makeTar(t, false, dups...)), t.TempDir(), ExtractOptions{MaxFiles: 10}); !errors.Is(err, ErrLimit) {
		t.Errorf("repeated directory headers: err = %v, want ErrLimit", err)
	}
}

// TestExtractChecksFreeSpace: a member declaring more than the free space
// is refused before a byte is written, however small the archive.
func TestExtractChecksFreeSpace(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Mode: 0o600, Size: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	dir := t.TempDir()
	_, err := Extract(context.Background(), bytes.NewReader(buf.Bytes()), dir, ExtractOptions{MaxBytes: 1 << 41})
	if !errors.Is(err, safefs.ErrNoSpace) {
		t.Errorf("1 TiB member: err = %v, want ErrNoSpace", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "huge")); err == nil {
		t.Error("the refused member was created")
	}
}
