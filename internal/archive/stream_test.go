package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/crtool/crtool/internal/testutil"
)

// streamed builds an archive through Stream: the checkpoint directory,
// two streamed members (one empty, one of size bytes), then a staged tree.
// It returns the archive's path and the content of every member.
func streamed(t *testing.T, c Compression, size int) (string, map[string][32]byte) {
	return streamedWith(t, WriteOptions{Compression: c}, size)
}

func streamedWith(t *testing.T, o WriteOptions, size int) (string, map[string][32]byte) {
	t.Helper()
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	want := map[string][32]byte{}
	for rel, content := range map[string]string{
		"config.dump":                  `{"id":"x"}`,
		"checkpoint/pagemap-1.img":     "pagemap",
		"checkpoint/inventory.img":     "inventory",
		"crtool.json":                  "{}",
		"checkpoint/sub/not-pages.img": "x",
	} {
		p := filepath.Join(stage, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		want[rel] = sha256.Sum256([]byte(content))
	}
	out := filepath.Join(dir, "a.tar")
	s, err := CreateStream(out, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	fi, err := os.Stat(filepath.Join(stage, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddDir("checkpoint", fi); err != nil {
		t.Fatal(err)
	}
	// Half random, half repetitive, written in odd pieces.
	data := make([]byte, size)
	rand.New(rand.NewSource(1)).Read(data[:size/2])
	for i := size / 2; i < size; i++ {
		data[i] = byte(i / 4096)
	}
	for _, m := range []struct {
		name string
		data []byte
	}{{"checkpoint/pages-1.img", data}, {"checkpoint/pages-2.img", nil}, {"checkpoint/pages-3.img", data[:100]}} {
		w, err := s.Create(m.name)
		if err != nil {
			t.Fatal(err)
		}
		for b := m.data; len(b) > 0; {
			n := min(len(b), 70001)
			if _, err := w.Write(b[:n]); err != nil {
				t.Fatal(err)
			}
			b = b[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want[m.name] = sha256.Sum256(m.data)
	}
	if err := s.AddTree(context.Background(), stage, func(rel string) bool { return rel == "checkpoint" }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out, want
}

func TestStreamReadBack(t *testing.T) {
	for _, c := range []Compression{None, Gzip, Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			out, want := streamed(t, c, 5<<20+4096)
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := map[string][32]byte{}
			var dirs []string
			err = Walk(context.Background(), f, func(hdr *tar.Header, body io.Reader) error {
				if hdr.Typeflag == tar.TypeDir {
					dirs = append(dirs, hdr.Name)
					return nil
				}
				h := sha256.New()
				if _, err := io.Copy(h, body); err != nil {
					return err
				}
				got[hdr.Name] = [32]byte(h.Sum(nil))
				return nil
			})
			if err != nil {
				t.Fatalf("walk: %v", err)
			}
			if len(got) != len(want) {
				t.Errorf("members %v, want %d", keys(got), len(want))
			}
			for name, sum := range want {
				if got[name] != sum {
					t.Errorf("%s: content differs", name)
				}
			}
			if strings.Join(dirs, ",") != "checkpoint/,checkpoint/sub/" {
				t.Errorf("directories %v", dirs)
			}
		})
	}
}

// TestStreamReadByTools checks that the command-line tools read a streamed
// archive: gzip -d and zstd -d accept the stored and raw pieces, tar
// extracts what they give.
func TestStreamReadByTools(t *testing.T) {
	for _, tc := range []struct {
		c   Compression
		cmd []string
	}{{None, nil}, {Gzip, []string{"gzip", "-dc"}}, {Zstd, []string{"zstd", "-dcq"}}} {
		t.Run(tc.c.String(), func(t *testing.T) {
			out, want := streamed(t, tc.c, 3<<20)
			tarFile := out
			if tc.cmd != nil {
				_, err := exec.LookPath(tc.cmd[0])
				testutil.Require(t, err == nil, tc.cmd[0]+" is not installed (make deps installs it)")
				b, err := exec.Command(tc.cmd[0], append(tc.cmd[1:], out)...).Output()
				if err != nil {
					t.Fatalf("%v: %v", tc.cmd, err)
				}
				tarFile = out + ".plain"
				if err := os.WriteFile(tarFile, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			dest := t.TempDir()
			if b, err := exec.Command("tar", "-xf", tarFile, "-C", dest).CombinedOutput(); err != nil {
				t.Fatalf("tar -x: %v: %s", err, b)
			}
			for name, sum := range want {
				b, err := os.ReadFile(filepath.Join(dest, name))
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if sha256.Sum256(b) != sum {
					t.Errorf("%s: content differs", name)
				}
			}
		})
	}
}

// TestStreamAbortLeavesNothing: an abandoned stream leaves no file.
func TestStreamAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := CreateStream(filepath.Join(dir, "a.tar.zst"), WriteOptions{Compression: Zstd})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Create("checkpoint/pages-1.img")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte("x"), 1<<20)); err != nil {
		t.Fatal(err)
	}
	s.Abort()
	if _, err := w.Write([]byte("y")); err == nil {
		t.Error("write after abort succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestHeaderBlockLargeMember(t *testing.T) {
	b, err := headerBlock(&tar.Header{Typeflag: tar.TypeReg, Name: "checkpoint/pages-1.img", Size: 9 << 30, Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := tar.NewReader(io.MultiReader(bytes.NewReader(b), bytes.NewReader(make([]byte, 1024)))).Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Size != 9<<30 {
		t.Errorf("size %d", hdr.Size)
	}
}

func keys(m map[string][32]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestStreamManifest: the manifest covers the streamed members too, and
// Verify accepts the archive.
func TestStreamManifest(t *testing.T) {
	for _, c := range []Compression{None, Gzip, Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			out, want := streamedWith(t, WriteOptions{Compression: c, Manifest: true}, 1<<20)
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, err := Verify(context.Background(), f)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if st.Members != len(want) {
				t.Errorf("verified %d members, want %d", st.Members, len(want))
			}
		})
	}
}
