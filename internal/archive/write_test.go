package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/testutil"
)

var allCompressions = []Compression{None, Gzip, Zstd}

func writeArchive(t *testing.T, srcDir string, c Compression) ([]byte, WriteStats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := write(context.Background(), &buf, srcDir, WriteOptions{Compression: c})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if st.OutputBytes != int64(buf.Len()) {
		t.Errorf("OutputBytes = %d, wrote %d", st.OutputBytes, buf.Len())
	}
	return buf.Bytes(), st
}

func TestWriteOrderAndHeaders(t *testing.T) {
	src := stage(t)
	want := stagedNames()
	var wantBytes int64
	for _, e := range stagedLayout {
		wantBytes += int64(e.size)
	}
	for _, c := range allCompressions {
		t.Run(c.String(), func(t *testing.T) {
			archive, st := writeArchive(t, src, c)
			if got, _, _ := Detect(bytes.NewReader(archive)); got != c {
				t.Errorf("archive detected as %v", got)
			}
			if st.Members != len(want) || st.InputBytes != wantBytes {
				t.Errorf("stats = %+v, want %d members and %d bytes", st, len(want), wantBytes)
			}
			hdrs := membersOf(t, archive)
			var names []string
			for _, h := range hdrs {
				names = append(names, h.Name)
			}
			if !reflect.DeepEqual(names, want) {
				t.Fatalf("member order:\n got %q\nwant %q", names, want)
			}
			for i, h := range hdrs {
				e := stagedLayout[i]
				wantType, wantMode := byte(tar.TypeReg), int64(e.mode)|0o100000
				if e.dir {
					wantType, wantMode = tar.TypeDir, int64(e.mode)|0o40000
				}
				switch {
				case h.Format != tar.FormatUSTAR:
					t.Errorf("%s: format %v, want ustar", h.Name, h.Format)
				case h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root":
					t.Errorf("%s: owner %d:%d %s:%s, want root", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
				case h.Typeflag != wantType || h.Mode != wantMode:
					t.Errorf("%s: type %q mode %o, want %q %o", h.Name, h.Typeflag, h.Mode, wantType, wantMode)
				case h.Size != int64(e.size):
					t.Errorf("%s: size %d, want %d", h.Name, h.Size, e.size)
				case strings.HasPrefix(h.Name, "./") || strings.HasPrefix(h.Name, "/"):
					t.Errorf("%s: name not relative", h.Name)
				}
				fi, err := os.Stat(filepath.Join(src, e.rel))
				if err != nil {
					t.Fatal(err)
				}
				if !h.ModTime.Equal(fi.ModTime().Truncate(time.Second)) {
					t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, fi.ModTime())
				}
			}
		})
	}
}

// TestWriteRawLayout checks the bytes that archive/tar's reader would
// forgive: ustar magic, no padding past the two zero blocks.
func TestWriteRawLayout(t *testing.T) {
	archive, _ := writeArchive(t, stage(t), None)
	if string(archive[257:265]) != "ustar\x0000" {
		t.Errorf("magic %q, want POSIX ustar", archive[257:265])
	}
	if len(archive)%512 != 0 || !bytes.Equal(archive[len(archive)-1024:], make([]byte, 1024)) {
		t.Fatalf("archive does not end in two zero blocks")
	}
	if bytes.Equal(archive[len(archive)-1536:len(archive)-1024], make([]byte, 512)) {
		t.Errorf("archive is padded past the end marker")
	}
}

func TestRoundTrip(t *testing.T) {
	src := stage(t)
	want := tree(t, src)
	for _, c := range allCompressions {
		t.Run(c.String(), func(t *testing.T) {
			archive, wst := writeArchive(t, src, c)
			_, dest := newDest(t)
			st, err := Extract(context.Background(), bytes.NewReader(archive), dest, ExtractOptions{})
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if st.Members != wst.Members || st.Bytes != wst.InputBytes {
				t.Errorf("extract stats %+v, write stats %+v", st, wst)
			}
			got := tree(t, dest)
			if len(got) != len(want) {
				t.Errorf("extracted %d entries, staged %d", len(got), len(want))
			}
			for name, w := range want {
				g, ok := got[name]
				switch {
				case !ok:
					t.Errorf("%s missing", name)
				case g.data != w.data:
					t.Errorf("%s: content differs", name)
				case g.mode != w.mode:
					t.Errorf("%s: mode %v, want %v", name, g.mode, w.mode)
				}
			}
			fi, err := os.Stat(filepath.Join(dest, "checkpoint", "pages-1.img"))
			if err != nil {
				t.Fatal(err)
			}
			wfi, _ := os.Stat(filepath.Join(src, "checkpoint", "pages-1.img"))
			if !fi.ModTime().Equal(wfi.ModTime().Truncate(time.Second)) {
				t.Errorf("mtime %v, want %v", fi.ModTime(), wfi.ModTime().Truncate(time.Second))
			}
		})
	}
}

func TestWriteLongNames(t *testing.T) {
	src := t.TempDir()
	long := strings.Repeat("d", 120) + "/" + strings.Repeat("f", 99) // ustar prefix+name
	longer := strings.Repeat("x", 150) + ".img"                      // needs PAX
	utf := "checkpoint/tmpfs-é.img"                                  // not ASCII: PAX
	for _, rel := range []string{long, "checkpoint/" + longer, utf} {
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	archive, _ := writeArchive(t, src, Gzip)
	formats := map[string]tar.Format{}
	for _, h := range membersOf(t, archive) {
		formats[h.Name] = h.Format
	}
	for name, want := range map[string]tar.Format{
		long:                   tar.FormatUSTAR,
		"checkpoint/" + longer: tar.FormatPAX,
		utf:                    tar.FormatPAX,
	} {
		if formats[name] != want {
			t.Errorf("%s: format %v, want %v", name, formats[name], want)
		}
	}
	_, dest := newDest(t)
	if _, err := Extract(context.Background(), bytes.NewReader(archive), dest, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, dest); got["checkpoint/"+longer].data != "checkpoint/"+longer || got[long].data != long {
		t.Errorf("long names did not survive: %v", got)
	}
	if _, err := exec.LookPath("tar"); err == nil {
		cmd := exec.Command("tar", "-tzf", "-")
		cmd.Stdin = bytes.NewReader(archive)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), longer) {
			t.Errorf("tar -t: %v\n%s", err, out)
		}
	}
}

func TestWriteRejects(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{
			name: "fifo in checkpoint",
			setup: func(t *testing.T, dir string) {
				if err := syscall.Mkfifo(filepath.Join(dir, "checkpoint", "fifo"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: "checkpoint/fifo: not a regular file or directory",
		},
		{
			name: "symlink at top level",
			setup: func(t *testing.T, dir string) {
				if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
					t.Fatal(err)
				}
			},
			want: "link: not a regular file or directory",
		},
		{
			name: "checkpoint is a file",
			setup: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "checkpoint")
				if err := os.RemoveAll(p); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: "checkpoint: not a directory",
		},
		{
			name: "config.dump is a directory",
			setup: func(t *testing.T, dir string) {
				if err := os.Mkdir(filepath.Join(dir, "config.dump"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			want: "config.dump: not a regular file",
		},
		{
			name:  "missing source",
			setup: func(t *testing.T, dir string) { os.RemoveAll(dir) },
			want:  "no such file or directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "checkpoint"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "checkpoint", "inventory.img"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, dir)
			var buf bytes.Buffer
			_, err := write(context.Background(), &buf, dir, WriteOptions{Compression: Gzip})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Write error = %v, want it to mention %q", err, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("%d bytes written before the error was found", buf.Len())
			}
		})
	}
}

// bigStage is a staging directory whose pages image takes several copy
// chunks, so that a cancellation can land in the middle of it.
func bigStage(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, format.ConfigDumpFile), []byte(`{"runtime":"runc"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, format.CheckpointDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, format.CheckpointDir, "inventory.img"), []byte("inv"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(src, format.CheckpointDir, "pages-1.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(16 * copyChunk); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return src
}

// TestWriteCancelled checks that a cancelled Write leaves output that no
// reader takes for a complete archive, whether it stops between members or
// inside one.
func TestWriteCancelled(t *testing.T) {
	src := bigStage(t)
	for _, c := range allCompressions {
		for _, checks := range []int64{2, 3, 8} { // before inventory.img, before pages, inside pages
			t.Run(fmt.Sprintf("%v/after%dchecks", c, checks), func(t *testing.T) {
				var buf bytes.Buffer
				_, err := write(cancelAfter(checks), &buf, src, WriteOptions{Compression: c})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Write error = %v, want context.Canceled", err)
				}
				_, dest := newDest(t)
				_, err = Extract(context.Background(), bytes.NewReader(buf.Bytes()), dest, ExtractOptions{})
				if err == nil {
					t.Fatalf("Extract accepted the output of a cancelled Write")
				}
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotArchive) {
					t.Errorf("Extract error = %v, want truncated or corrupt", err)
				}
			})
		}
	}
}

// tempFiles lists WriteFile's leftovers in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".*.crtool-tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWriteFile(t *testing.T) {
	src := bigStage(t)
	fifoSrc := bigStage(t)
	if err := syscall.Mkfifo(filepath.Join(fifoSrc, format.CheckpointDir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		existing bool // a file is already under the target name
		ctx      context.Context
		src      string
		wantErr  error
	}{
		{name: "new", ctx: context.Background(), src: src},
		{name: "replaces existing", existing: true, ctx: context.Background(), src: src},
		{name: "cancelled mid-file", ctx: cancelAfter(10), src: src, wantErr: context.Canceled},
		{name: "cancelled mid-file over existing", existing: true, ctx: cancelAfter(6), src: src, wantErr: context.Canceled},
		{name: "cancelled before start", ctx: cancelAfter(0), src: src, wantErr: context.Canceled},
		{name: "cancelled in the last chunk", ctx: cancelAfter(21), src: src, wantErr: context.Canceled},
		{name: "cancelled before rename", ctx: cancelAfter(22), src: src, wantErr: context.Canceled},
		{name: "not cancelled with one check to spare", ctx: cancelAfter(23), src: src},
		{name: "bad source over existing", existing: true, ctx: context.Background(), src: fifoSrc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "ckpt.tar.zst")
			old := []byte("previous archive")
			if tt.existing {
				if err := os.WriteFile(target, old, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			st, err := WriteFile(tt.ctx, target, tt.src, WriteOptions{Compression: Zstd})
			if tmp := tempFiles(t, dir); len(tmp) != 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
			failed := tt.wantErr != nil || tt.src == fifoSrc
			if failed {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("WriteFile error = %v, want %v", err, tt.wantErr)
				}
				got, rerr := os.ReadFile(target)
				switch {
				case tt.existing && !bytes.Equal(got, old):
					t.Errorf("existing file changed: %q, %v", got, rerr)
				case !tt.existing && !errors.Is(rerr, fs.ErrNotExist):
					t.Errorf("target exists after a failed write: %v", rerr)
				}
				return
			}
			if err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			fi, err := os.Stat(target)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o600 || fi.Size() != st.OutputBytes {
				t.Errorf("archive mode %v size %d, want 0600 and %d", fi.Mode(), fi.Size(), st.OutputBytes)
			}
			f, _, err := Open(target)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, dest := newDest(t)
			if _, err := Extract(context.Background(), f, dest, ExtractOptions{}); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if !reflect.DeepEqual(tree(t, dest), tree(t, src)) {
				t.Errorf("extracted tree differs from the staged one")
			}
		})
	}
}

func TestWriteFileStdout(t *testing.T) {
	src := stage(t)
	out, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	saved := os.Stdout
	os.Stdout = out
	st, err := WriteFile(context.Background(), "-", src, WriteOptions{Compression: Gzip})
	os.Stdout = saved
	if err != nil {
		t.Fatalf("WriteFile(-): %v", err)
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != st.OutputBytes || len(membersOf(t, b)) != len(stagedLayout) {
		t.Errorf("stdout got %d bytes (stats say %d)", len(b), st.OutputBytes)
	}
	if _, err := os.Stat("-"); err == nil {
		t.Errorf("a file named - was created")
	}
}

// TestGzipInterop checks that the system's gzip and tar read crtool's gzip
// archives, as Podman's import does.
func TestGzipInterop(t *testing.T) {
	for _, tool := range []string{"gzip", "tar"} {
		_, err := exec.LookPath(tool)
		testutil.Require(t, err == nil, tool+" is not installed")
	}
	archive, _ := writeArchive(t, stage(t), Gzip)
	if len(archive) < 10 || archive[0] != 0x1f || archive[1] != 0x8b || archive[2] != 8 {
		t.Fatalf("not a deflate gzip stream")
	}
	run := func(name string, stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
		}
		return out
	}
	plain := run("gzip", archive, "-d", "-c")
	listing := strings.Fields(string(run("tar", plain, "-tf", "-")))
	if !reflect.DeepEqual(listing, stagedNames()) {
		t.Errorf("tar -t listing:\n got %q\nwant %q", listing, stagedNames())
	}
	dest := t.TempDir()
	run("tar", archive, "-xzf", "-", "-C", dest)
	if got := tree(t, dest); got["checkpoint/pages-2.img"].data == "" {
		t.Errorf("tar -x did not extract pages-2.img")
	}

	t.Run("zstd", func(t *testing.T) {
		_, err := exec.LookPath("zstd")
		testutil.Require(t, err == nil, "zstd is not installed: run 'make deps'")
		archive, _ := writeArchive(t, stage(t), Zstd)
		plain := run("zstd", archive, "-d", "-c")
		if listing := strings.Fields(string(run("tar", plain, "-tf", "-"))); !reflect.DeepEqual(listing, stagedNames()) {
			t.Errorf("tar -t listing of zstd -d output: %q", listing)
		}
	})
}
