package format

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestReadMetadataBounded: a crtool.json that unpacks to more than
// MaxMetadataSize (a few KiB of zstd can) is refused before decoding.
func TestReadMetadataBounded(t *testing.T) {
	dir := t.TempDir()
	b := append([]byte(`{"version":1,"hostname":"`), bytes.Repeat([]byte("a"), int(MaxMetadataSize))...)
	b = append(b, `"}`...)
	if err := os.WriteFile(filepath.Join(dir, MetadataFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMetadata(dir); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadMetadata of %d bytes: err = %v, want ErrTooLarge", len(b), err)
	}
	if _, err := ReadMetadata(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing crtool.json: err = %v, want os.ErrNotExist", err)
	}
}
