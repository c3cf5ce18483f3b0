package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract feeds Extract and Walk arbitrary bytes: they must not panic,
// and Extract must create nothing but directories and regular files, all
// inside the destination.
func FuzzExtract(f *testing.F) {
	for _, name := range []string{"bb2-httpd-gzip.tar.gz", "bbloop-criu411-gzip.tar.gz"} {
		if b, err := os.ReadFile(filepath.Join(referenceDir, "archives", name)); err == nil {
			f.Add(b)
		}
	}
	small := makeTar(f, false,
		dirEntry("./", 0o755),
		dirEntry("checkpoint/", 0o600),
		fileEntry("checkpoint/inventory.img", "inventory"),
		fileEntry("./config.dump", `{"runtime":"runc"}`),
	)
	f.Add(small)
	f.Add(makeTar(f, true, dirEntry("a/", 0o755), fileEntry("a/b", "b")))
	f.Add(makeTar(f, false, fileEntry("../escape", "x")))
	f.Add(makeTar(f, false, tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/"}}, fileEntry("l/x", "x")))
	f.Add(makeTar(f, false, fileEntry("f", "x"), fileEntry("f/g", "x")))
	f.Add(makeTar(f, false, fileEntry(strings.Repeat("n", 200), "long")))
	var zst bytes.Buffer
	if w, err := NewCompressor(Zstd, &zst, 0); err == nil {
		w.Write(small)
		w.Close()
		f.Add(zst.Bytes())
	}
	f.Add(small[:len(small)-1024])
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})

	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dest := filepath.Join(parent, "dest")
		if err := os.Mkdir(dest, 0o755); err != nil {
			t.Fatal(err)
		}
		opts := ExtractOptions{MaxBytes: 4 << 20, MaxFiles: 200}
		_, _ = Extract(context.Background(), bytes.NewReader(data), dest, opts)

		top, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(top) != 1 || top[0].Name() != "dest" {
			t.Fatalf("Extract wrote next to the destination: %v", top)
		}
		err = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && !d.Type().IsRegular() {
				t.Errorf("Extract created %s of type %v", p, d.Type())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		_ = Walk(context.Background(), bytes.NewReader(data), func(hdr *tar.Header, body io.Reader) error {
			n := strings.TrimSuffix(hdr.Name, "/")
			if n == "" || strings.HasPrefix(n, "/") || strings.HasPrefix(n, "./") || n == ".." ||
				strings.HasPrefix(n, "../") || strings.Contains(n, "/../") || strings.HasSuffix(n, "/..") {
				t.Errorf("Walk passed an unsafe name %q", hdr.Name)
			}
			if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeDir {
				t.Errorf("Walk passed %q of type %q", hdr.Name, hdr.Typeflag)
			}
			_, err := io.CopyN(io.Discard, body, 8<<20)
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		})
	})
}
