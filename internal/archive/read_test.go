package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/safefs"
	"github.com/crtool/crtool/internal/testutil"
)

// referenceMembers parses decoded/<archive>.members.txt (`tar -tv` output)
// into names and sizes.
func referenceMembers(t *testing.T, archive string) (names []string, sizes map[string]int64) {
	t.Helper()
	base := strings.TrimSuffix(strings.TrimSuffix(archive, ".tar.gz"), ".tar.zst")
	b, err := os.ReadFile(filepath.Join(referenceDir, "decoded", base+".members.txt"))
	if err != nil {
		testutil.Require(t, false, fmt.Sprintf("reference listing: %v", err))
	}
	sizes = map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("unexpected listing line %q", line)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, f[5])
		sizes[f[5]] = size
	}
	return names, sizes
}

func TestExtractPodmanArchives(t *testing.T) {
	for _, name := range podmanArchives {
		t.Run(name, func(t *testing.T) {
			archive := referenceArchive(t, name)
			wantNames, sizes := referenceMembers(t, name)

			var names []string
			err := Walk(context.Background(), bytes.NewReader(archive), func(hdr *tar.Header, body io.Reader) error {
				names = append(names, hdr.Name)
				return nil
			})
			if err != nil {
				t.Fatalf("Walk: %v", err)
			}
			if !reflect.DeepEqual(names, wantNames) {
				t.Errorf("members:\n got %q\nwant %q", names, wantNames)
			}

			parent, dest := newDest(t)
			st, err := Extract(context.Background(), bytes.NewReader(archive), dest, ExtractOptions{})
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if st.Members != len(wantNames) {
				t.Errorf("extracted %d members, want %d", st.Members, len(wantNames))
			}
			got := tree(t, dest)
			if len(got) != len(wantNames) {
				t.Errorf("destination holds %d entries, want %d", len(got), len(wantNames))
			}
			for _, n := range wantNames {
				e, ok := got[n]
				switch {
				case !ok:
					t.Errorf("%s not extracted", n)
				case strings.HasSuffix(n, "/") && !e.mode.IsDir():
					t.Errorf("%s: not a directory", n)
				case !strings.HasSuffix(n, "/") && int64(len(e.data)) != sizes[n]:
					t.Errorf("%s: %d bytes, want %d", n, len(e.data), sizes[n])
				}
			}
			// Podman's checkpoint/ is 0600; it must still be usable.
			if e := got["checkpoint/"]; e.mode.Perm() != 0o700 {
				t.Errorf("checkpoint/ mode %v, want 0700", e.mode)
			}
			if e := got["config.dump"]; e.mode.Perm() != 0o600 {
				t.Errorf("config.dump mode %v, want 0600", e.mode)
			}
			checkOutside(t, parent)
		})
	}
}

// TestExtractImageArchive feeds Extract the docker-archive image stored next
// to the checkpoints: not a checkpoint, and it holds a symlink.
func TestExtractImageArchive(t *testing.T) {
	archive := referenceArchive(t, "crtest-busybox-image.docker-archive.tar.gz")
	parent, dest := newDest(t)
	_, err := Extract(context.Background(), bytes.NewReader(archive), dest, ExtractOptions{})
	if err != nil && !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("Extract error = %v, want success or an unsafe member", err)
	}
	if err != nil && !strings.Contains(err.Error(), "layer.tar") {
		t.Errorf("error %q does not name the member", err)
	}
	checkOutside(t, parent)
}

func TestExtractGNUTar(t *testing.T) {
	_, err := exec.LookPath("tar")
	testutil.Require(t, err == nil, "tar is not installed")
	src := stage(t)
	deep := filepath.Join(src, "volumes", strings.Repeat("long-directory-name/", 8))
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deep, strings.Repeat("f", 120)), []byte("deep"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := tree(t, src)
	for _, format := range []string{"gnu", "posix", "ustar"} {
		t.Run(format, func(t *testing.T) {
			if format == "ustar" {
				// ustar cannot hold the long name; Podman's plain layout only.
				os.RemoveAll(filepath.Join(src, "volumes", "long-directory-name"))
				want = tree(t, src)
			}
			out := filepath.Join(t.TempDir(), "x.tar.gz")
			cmd := exec.Command("tar", "--format="+format, "-C", src, "-czf", out, ".")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tar: %v\n%s", err, b)
			}
			archive, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			first := membersOf(t, archive)[0].Name
			if first != "./" {
				t.Fatalf("GNU tar's first member is %q, not ./", first)
			}
			_, dest := newDest(t)
			if _, err := Extract(context.Background(), bytes.NewReader(archive), dest, ExtractOptions{}); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			got := tree(t, dest)
			for name, w := range want {
				if g, ok := got[name]; !ok || g.data != w.data {
					t.Errorf("%s: not extracted as staged", name)
				}
			}
			var names []string
			err = Walk(context.Background(), bytes.NewReader(archive), func(hdr *tar.Header, body io.Reader) error {
				names = append(names, hdr.Name)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(names) == 0 || names[0] == "./" || strings.HasPrefix(names[0], "./") {
				t.Errorf("Walk names not normalized: %q", names)
			}
		})
	}
}

func TestExtractModes(t *testing.T) {
	archive := makeTar(t, false,
		dirEntry("checkpoint/", 0o600),
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "checkpoint/suid", Mode: 0o4755, Size: 1}, data: "x"},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "checkpoint/none", Mode: 0, Size: 1}, data: "x"},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "typebits", Mode: 0o100640, Size: 1}, data: "x"},
		dirEntry("ro/", 0o1555),
		dirEntry("wx/", 0o300),
		fileEntry("implicit/parent/file", "x"),
	)
	_, dest := newDest(t)
	if _, err := Extract(context.Background(), bytes.NewReader(archive), dest, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{
		"checkpoint/":      fs.ModeDir | 0o700,
		"checkpoint/suid":  0o755,
		"checkpoint/none":  0,
		"typebits":         0o640,
		"ro/":              fs.ModeDir | 0o755,
		"wx/":              fs.ModeDir | 0o700,
		"implicit/parent/": fs.ModeDir | 0o755&^fs.FileMode(umask()),
	} {
		fi, err := os.Lstat(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
}

func umask() int {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return m
}

func TestExtractHostile(t *testing.T) {
	outsideAbs := func(parent string) string { return filepath.Join(parent, "outside", "abs") }
	tests := []struct {
		name    string
		setup   func(t *testing.T, parent, dest string) // before Extract
		entries func(parent string) []tarEntry
		opts    ExtractOptions
		wantErr error  // nil: any error
		want    string // in the message
	}{
		{
			name:    "dot dot",
			entries: func(string) []tarEntry { return []tarEntry{fileEntry("../x", "evil")} },
			wantErr: safefs.ErrUnsafe, want: `"../x"`,
		},
		{
			name:    "absolute",
			entries: func(p string) []tarEntry { return []tarEntry{fileEntry(outsideAbs(p), "evil")} },
			wantErr: safefs.ErrUnsafe, want: "absolute",
		},
		{
			name:    "absolute root dir",
			entries: func(string) []tarEntry { return []tarEntry{dirEntry("/", 0o755)} },
			wantErr: safefs.ErrUnsafe, want: "absolute",
		},
		{
			name:    "dot dot after cleaning",
			entries: func(string) []tarEntry { return []tarEntry{fileEntry("a/../../x", "evil")} },
			wantErr: safefs.ErrUnsafe, want: `"a/../../x"`,
		},
		{
			name:    "dot slash dot dot",
			entries: func(string) []tarEntry { return []tarEntry{dirEntry("./", 0o755), fileEntry("./../x", "evil")} },
			wantErr: safefs.ErrUnsafe, want: `"./../x"`,
		},
		{
			name: "symlink",
			entries: func(p string) []tarEntry {
				return []tarEntry{
					{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: filepath.Join(p, "outside")}},
					fileEntry("link/x", "evil"),
				}
			},
			wantErr: safefs.ErrUnsafe, want: `"link": symbolic links`,
		},
		{
			name: "hard link",
			entries: func(p string) []tarEntry {
				return []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "hl", Linkname: filepath.Join(p, "outside", "sentinel")}}}
			},
			wantErr: safefs.ErrUnsafe, want: `"hl": hard links`,
		},
		{
			name: "char device",
			entries: func(string) []tarEntry {
				return []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3, Mode: 0o666}}}
			},
			wantErr: safefs.ErrUnsafe, want: `"null": character devices`,
		},
		{
			name: "block device",
			entries: func(string) []tarEntry {
				return []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8, Mode: 0o660}}}
			},
			wantErr: safefs.ErrUnsafe, want: `"sda": block devices`,
		},
		{
			name: "fifo",
			entries: func(string) []tarEntry {
				return []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "checkpoint/fifo", Mode: 0o600}}}
			},
			wantErr: safefs.ErrUnsafe, want: `"checkpoint/fifo": fifos`,
		},
		{
			name: "pre-existing symlink as a directory",
			setup: func(t *testing.T, parent, dest string) {
				if err := os.Symlink(filepath.Join(parent, "outside"), filepath.Join(dest, "checkpoint")); err != nil {
					t.Fatal(err)
				}
			},
			entries: func(string) []tarEntry {
				return []tarEntry{fileEntry("checkpoint/sentinel", "evil"), fileEntry("checkpoint/new", "evil")}
			},
			wantErr: safefs.ErrUnsafe, want: "checkpoint is a symlink, which is never followed",
		},
		{
			name: "pre-existing symlink as a dir member",
			setup: func(t *testing.T, parent, dest string) {
				if err := os.Symlink(filepath.Join(parent, "outside"), filepath.Join(dest, "checkpoint")); err != nil {
					t.Fatal(err)
				}
			},
			entries: func(string) []tarEntry { return []tarEntry{dirEntry("checkpoint/", 0o777)} },
			want:    "not a directory",
		},
		{
			name: "pre-existing symlink as a file",
			setup: func(t *testing.T, parent, dest string) {
				if err := os.Symlink(filepath.Join(parent, "outside", "sentinel"), filepath.Join(dest, "config.dump")); err != nil {
					t.Fatal(err)
				}
			},
			entries: func(string) []tarEntry { return []tarEntry{fileEntry("config.dump", "evil")} },
			want:    "file exists",
		},
		{
			name: "dir member over a file member",
			entries: func(string) []tarEntry {
				return []tarEntry{fileEntry("checkpoint", "x"), dirEntry("checkpoint/", 0o755)}
			},
			want: "exists and is not a directory",
		},
		{
			name: "file under a file member",
			entries: func(string) []tarEntry {
				return []tarEntry{fileEntry("checkpoint", "x"), fileEntry("checkpoint/core-1.img", "x")}
			},
			want: "checkpoint: not a directory",
		},
		{
			name: "duplicate file",
			entries: func(string) []tarEntry {
				return []tarEntry{fileEntry("config.dump", "a"), fileEntry("config.dump", "b")}
			},
			want: "file exists",
		},
		{
			name: "file named like the root",
			entries: func(string) []tarEntry {
				return []tarEntry{fileEntry(".", "")}
			},
			wantErr: safefs.ErrUnsafe,
		},
		{
			name: "over MaxBytes",
			entries: func(string) []tarEntry {
				return []tarEntry{fileEntry("a", strings.Repeat("a", 600)), fileEntry("b", strings.Repeat("b", 600))}
			},
			opts:    ExtractOptions{MaxBytes: 1000},
			wantErr: ErrLimit, want: `b: archive over extraction limit`,
		},
		{
			name: "over MaxFiles",
			entries: func(string) []tarEntry {
				return []tarEntry{dirEntry("d/", 0o755), fileEntry("d/a", "a"), fileEntry("d/b", "b")}
			},
			opts:    ExtractOptions{MaxFiles: 2},
			wantErr: ErrLimit, want: `d/b: archive over extraction limit`,
		},
		{
			name: "deep implied directories",
			entries: func(string) []tarEntry {
				return []tarEntry{fileEntry(strings.Repeat("d/", 50)+"f", "x")}
			},
			opts:    ExtractOptions{MaxFiles: 10},
			wantErr: ErrLimit, want: "more than 10 files and directories",
		},
		{
			name: "endless root entries",
			entries: func(string) []tarEntry {
				var e []tarEntry
				for range 4000 {
					e = append(e, dirEntry("./", 0o755))
				}
				return e
			},
			opts:    ExtractOptions{MaxBytes: 1000, MaxFiles: 10},
			wantErr: ErrLimit,
		},
	}
	for _, tt := range tests {
		for _, gz := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/gzip=%v", tt.name, gz), func(t *testing.T) {
				parent, dest := newDest(t)
				if tt.setup != nil {
					tt.setup(t, parent, dest)
				}
				archive := makeTar(t, gz, tt.entries(parent)...)
				_, err := Extract(context.Background(), bytes.NewReader(archive), dest, tt.opts)
				if err == nil {
					t.Fatal("Extract accepted a hostile archive")
				}
				t.Log(err)
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q does not mention %q", err, tt.want)
				}
				checkOutside(t, parent)

				// Walk applies the same name and type checks; a symlink
				// already in the destination is Extract's alone to meet.
				if errors.Is(err, safefs.ErrUnsafe) && tt.setup == nil {
					werr := Walk(context.Background(), bytes.NewReader(archive), func(*tar.Header, io.Reader) error { return nil })
					if !errors.Is(werr, safefs.ErrUnsafe) {
						t.Errorf("Walk error = %v, want %v", werr, safefs.ErrUnsafe)
					}
				}
			})
		}
	}
}

// TestExtractSparse checks that GNU tar's sparse files (both encodings) are
// refused: crtool never writes them and their stream layout differs.
func TestExtractSparse(t *testing.T) {
	_, err := exec.LookPath("tar")
	testutil.Require(t, err == nil, "tar is not installed")
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "pages-1.img"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("data"), 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, format := range []string{"posix", "gnu"} {
		t.Run(format, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sparse.tar")
			if b, err := exec.Command("tar", "--format="+format, "-S", "-C", src, "-cf", out, "pages-1.img").CombinedOutput(); err != nil {
				t.Fatalf("tar: %v\n%s", err, b)
			}
			archive, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			_, dest := newDest(t)
			_, err = Extract(context.Background(), bytes.NewReader(archive), dest, ExtractOptions{})
			if !errors.Is(err, safefs.ErrUnsafe) || !strings.Contains(err.Error(), "pages-1.img") {
				t.Fatalf("Extract error = %v, want an unsafe member naming pages-1.img", err)
			}
		})
	}
}

func TestExtractTruncatedOrCorrupt(t *testing.T) {
	gz := referenceArchive(t, "bb2-httpd-gzip.tar.gz")
	zst := referenceArchive(t, "nginx-zstd-default.tar.zst")
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, at int) []byte {
		c := bytes.Clone(b)
		for i := at; i < at+16 && i < len(c); i++ {
			c[i] ^= 0x5a
		}
		return c
	}
	// The bb2 archive's first member header is followed by devshm's
	// header at 512 and data at 1024; config.dump's header is at 2560.
	tests := []struct {
		name string
		in   []byte
	}{
		{"gzip cut in half", gz[:len(gz)/2]},
		{"gzip without trailer", gz[:len(gz)-8]},
		{"gzip cut in the trailer", gz[:len(gz)-3]},
		{"gzip bytes flipped in the middle", flip(gz, len(gz)/2)},
		{"gzip checksum flipped", flip(gz, len(gz)-8)},
		{"gzip header only", gz[:10]},
		{"gzip magic only", gz[:2]},
		{"zstd cut in half", zst[:len(zst)/2]},
		{"zstd bytes flipped in the middle", flip(zst, len(zst)/2)},
		{"zstd cut at the end", zst[:len(zst)-1]},
		{"tar cut in half", plain[:len(plain)/2]},
		{"tar cut inside a header", plain[:2560+100]},
		{"tar cut at a member boundary", plain[:2560]},
		{"tar without end marker", plain[:len(plain)-1024]},
		{"tar with one zero block", plain[:len(plain)-512]},
		{"tar header flipped", flip(plain, 2560+10)},
		{"gzip of a tar cut at a member boundary", compressed(t, Gzip, plain[:2560])},
		{"zstd of a tar without end marker", compressed(t, Zstd, plain[:len(plain)-1024])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, dest := newDest(t)
			_, err := Extract(context.Background(), bytes.NewReader(tt.in), dest, ExtractOptions{})
			t.Log(err)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Extract error = %v, want %v", err, ErrCorrupt)
			}
			if !strings.Contains(err.Error(), "truncated or corrupt") {
				t.Errorf("error %q does not say truncated or corrupt", err)
			}
			checkOutside(t, parent)

			werr := Walk(context.Background(), bytes.NewReader(tt.in), func(hdr *tar.Header, body io.Reader) error {
				_, err := io.Copy(io.Discard, body)
				return err
			})
			if !errors.Is(werr, ErrCorrupt) {
				t.Errorf("Walk error = %v, want %v", werr, ErrCorrupt)
			}
		})
	}
}

// TestExtractNamesMember checks that a truncation inside a member's content
// names that member.
func TestExtractNamesMember(t *testing.T) {
	archive := makeTar(t, false, fileEntry("config.dump", "{}"), fileEntry("checkpoint/pages-1.img", strings.Repeat("p", 4096)))
	cut := archive[:512*4+1000]
	_, dest := newDest(t)
	_, err := Extract(context.Background(), bytes.NewReader(cut), dest, ExtractOptions{})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checkpoint/pages-1.img") {
		t.Fatalf("error = %v, want truncated naming checkpoint/pages-1.img", err)
	}
	werr := Walk(context.Background(), bytes.NewReader(cut), func(hdr *tar.Header, body io.Reader) error {
		_, err := io.Copy(io.Discard, body)
		return err
	})
	if !errors.Is(werr, ErrCorrupt) || !strings.Contains(werr.Error(), "in checkpoint/pages-1.img") {
		t.Fatalf("Walk error = %v, want truncated in checkpoint/pages-1.img", werr)
	}
}

// failingReader returns some bytes, then an I/O error.
type failingReader struct {
	r io.Reader
	n int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("input/output error")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestExtractReadError(t *testing.T) {
	archive := referenceArchive(t, "nginx-gzip.tar.gz")
	_, dest := newDest(t)
	_, err := Extract(context.Background(), &failingReader{r: bytes.NewReader(archive), n: len(archive) / 2}, dest, ExtractOptions{})
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("error = %v, want the read error, not corruption", err)
	}
}

func TestExtractCancelled(t *testing.T) {
	archive, _ := writeArchive(t, bigStage(t), Gzip)
	for _, n := range []int64{0, 2, 6} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			_, dest := newDest(t)
			_, err := Extract(cancelAfter(n), bytes.NewReader(archive), dest, ExtractOptions{})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error = %v, want context.Canceled", err)
			}
		})
	}
}

func TestExtractDestination(t *testing.T) {
	archive := makeTar(t, false, fileEntry("a", "x"))
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{filepath.Join(t.TempDir(), "missing"), file} {
		if _, err := Extract(context.Background(), bytes.NewReader(archive), dest, ExtractOptions{}); err == nil {
			t.Errorf("Extract into %s succeeded", dest)
		}
	}
}

func TestWalk(t *testing.T) {
	archive, _ := writeArchive(t, stage(t), Zstd)

	t.Run("all", func(t *testing.T) {
		var names []string
		err := Walk(context.Background(), bytes.NewReader(archive), func(hdr *tar.Header, body io.Reader) error {
			names = append(names, hdr.Name)
			if hdr.Name == "checkpoint/descriptors.json" {
				b, err := io.ReadAll(body)
				if err != nil || len(b) != 43 {
					return fmt.Errorf("descriptors.json: %d bytes, %w", len(b), err)
				}
			}
			return nil
		})
		if err != nil || !reflect.DeepEqual(names, stagedNames()) {
			t.Fatalf("Walk = %q, %v", names, err)
		}
	})

	t.Run("stop early", func(t *testing.T) {
		src := &countingReader{r: bytes.NewReader(archive)}
		var names []string
		err := Walk(context.Background(), src, func(hdr *tar.Header, body io.Reader) error {
			names = append(names, hdr.Name)
			if hdr.Name == format.MetadataFile {
				return ErrStop
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Walk = %v, want nil after ErrStop", err)
		}
		if names[len(names)-1] != format.MetadataFile || len(names) != 8 {
			t.Errorf("walked %q", names)
		}
		if src.n >= int64(len(archive)) {
			t.Errorf("Walk read all %d bytes despite stopping early", src.n)
		}
	})

	t.Run("callback error", func(t *testing.T) {
		errBoom := errors.New("boom")
		err := Walk(context.Background(), bytes.NewReader(archive), func(*tar.Header, io.Reader) error { return errBoom })
		if !errors.Is(err, errBoom) {
			t.Fatalf("Walk = %v, want the callback's error", err)
		}
	})

	t.Run("not an archive", func(t *testing.T) {
		err := Walk(context.Background(), strings.NewReader("hello"), func(*tar.Header, io.Reader) error { return nil })
		if !errors.Is(err, ErrNotArchive) {
			t.Fatalf("Walk = %v, want %v", err, ErrNotArchive)
		}
	})
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		raw  string
		dir  bool
		want string // "" with ok: the root
		ok   bool
	}{
		{"config.dump", false, "config.dump", true},
		{"./config.dump", false, "config.dump", true},
		{"checkpoint/", true, "checkpoint", true},
		{"./checkpoint/", true, "checkpoint", true},
		{"./", true, "", true},
		{".", true, "", true},
		{"a//b/./c", false, "a/b/c", true},
		{".//a", false, "a", true},
		{"a..b", false, "a..b", true},
		{"..a", false, "..a", true},
		{"", false, "", false},
		{"../x", false, "", false},
		{"a/../../x", false, "", false},
		{"a/..", true, "", false},
		{"..", true, "", false},
		{"/etc/x", false, "", false},
		{"/", true, "", false},
		{"file/", false, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := cleanName(tt.raw, tt.dir)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("cleanName(%q) = %q, %v", tt.raw, got, err)
			}
			if err != nil && !errors.Is(err, safefs.ErrUnsafe) {
				t.Errorf("error %v is not safefs.ErrUnsafe", err)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	r, size, err := Open("-")
	if err != nil || size != -1 {
		t.Fatal(size, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stdin.Stat(); err != nil {
		t.Errorf("closing the - reader closed stdin: %v", err)
	}
	if _, _, err := Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "a.tar")
	if err := os.WriteFile(p, make([]byte, 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	r, size, err = Open(p)
	if err != nil || size != 1024 {
		t.Fatalf("Open = %d, %v", size, err)
	}
	r.Close()
}
