package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
)

// writeWithManifest archives the staged layout, uncompressed so that a
// flipped byte in a member's content reaches the tar reader intact.
func writeWithManifest(t *testing.T, manifest bool) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a.tar")
	if _, err := WriteFile(context.Background(), p, stage(t), WriteOptions{Compression: None, Manifest: manifest}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flip changes one byte of member's content in the tar b.
func flip(t *testing.T, b []byte, member string) []byte {
	t.Helper()
	out := bytes.Clone(b)
	for off := 0; off+512 <= len(out); off += 512 {
		if string(bytes.TrimRight(out[off:off+100], "\x00")) == member {
			out[off+512+100] ^= 0xff
			return out
		}
	}
	t.Fatalf("member %s not found", member)
	return nil
}

// TestManifest: crtool's archives end with the SHA-256 of every member;
// extraction and Verify refuse a flipped byte in a page image and in
// crtool.json, naming the member, and archives without a manifest still
// extract.
func TestManifest(t *testing.T) {
	good := writeWithManifest(t, true)
	st, err := Extract(context.Background(), bytes.NewReader(good), t.TempDir(), ExtractOptions{})
	if err != nil || !st.Verified {
		t.Fatalf("intact archive: verified %v, %v", st.Verified, err)
	}
	vs, err := Verify(context.Background(), bytes.NewReader(good))
	if err != nil || vs.Members == 0 {
		t.Fatalf("Verify intact: %+v, %v", vs, err)
	}
	for _, member := range []string{"checkpoint/pages-2.img", format.MetadataFile} {
		bad := flip(t, good, member)
		_, err := Extract(context.Background(), bytes.NewReader(bad), t.TempDir(), ExtractOptions{})
		if !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), `"`+member+`"`) {
			t.Errorf("%s flipped: Extract err = %v", member, err)
		}
		if _, err := Verify(context.Background(), bytes.NewReader(bad)); !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), member) {
			t.Errorf("%s flipped: Verify err = %v", member, err)
		}
	}
	plain := writeWithManifest(t, false)
	if st, err := Extract(context.Background(), bytes.NewReader(plain), t.TempDir(), ExtractOptions{}); err != nil || st.Verified {
		t.Errorf("no manifest: verified %v, %v", st.Verified, err)
	}
	if _, err := Verify(context.Background(), bytes.NewReader(plain)); !errors.Is(err, ErrNoManifest) {
		t.Errorf("Verify without manifest: %v", err)
	}
}
