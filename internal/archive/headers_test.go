package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
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
