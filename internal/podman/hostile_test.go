package podman

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
)

func stage(t *testing.T, files map[string][]byte) string {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, format.CheckpointDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDecodeRefusesHostileNames: the name becomes the state directory's
// and part of the overlay's options.
func TestDecodeRefusesHostileNames(t *testing.T) {
	spec := []byte(`{"ociVersion":"1.0.2"}`)
	for _, name := range []string{",upperdir=.,workdir=..", "a,lowerdir=/", "..", "x/../../etc", "a b"} {
		dir := stage(t, map[string][]byte{
			format.SpecDumpFile:   spec,
			format.ConfigDumpFile: []byte(`{"name":` + quote(name) + `}`),
		})
		_, err := Decode(dir, "", t.TempDir())
		if err == nil {
			t.Fatalf("name %q accepted", name)
		}
		if !strings.Contains(err.Error(), "container name") || !errors.Is(err, errdefs.ErrInvalidArchive) {
			t.Errorf("name %q: error %q", name, err)
		}
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// TestDecodeBoundsMetadata gives metadata files larger than any real one:
// they must be refused, not read and decoded whole.
func TestDecodeBoundsMetadata(t *testing.T) {
	big := append([]byte(`{"ociVersion":"1.0.2"`), bytes.Repeat([]byte(" "), int(format.MaxMetadataSize))...)
	big = append(big, '}')
	for _, name := range []string{format.SpecDumpFile, format.ConfigDumpFile} {
		files := map[string][]byte{format.SpecDumpFile: []byte(`{"ociVersion":"1.0.2"}`)}
		files[name] = big
		_, err := Decode(stage(t, files), "web", t.TempDir())
		if !errors.Is(err, format.ErrTooLarge) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s of %d bytes: err = %v, want it refused as too large", name, len(big), err)
		}
	}
}
