package rootfs

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
)

// Podman's reference archives whose rootfs diff this package must read and
// write; the nginx ones also have new directories.
var diffArchives = []string{
	"bb2-httpd-gzip.tar.gz",
	"bbloop-criu411-gzip.tar.gz",
	"nginx-gzip.tar.gz",
	"nginx-tcp-established-gzip.tar.gz",
}

// extractDiff writes an archive's rootfs-diff.tar and deleted.files into a
// new directory and returns their paths ("" when absent).
func extractDiff(t *testing.T, archive string) (diffTar, deleted string) {
	t.Helper()
	m := archiveMembers(t, archive, format.RootfsDiffTar, format.DeletedFilesFile)
	dir := t.TempDir()
	if b, ok := m[format.RootfsDiffTar]; ok {
		diffTar = filepath.Join(dir, format.RootfsDiffTar)
		must(t, os.WriteFile(diffTar, b, 0o644))
	}
	if b, ok := m[format.DeletedFilesFile]; ok {
		deleted = filepath.Join(dir, format.DeletedFilesFile)
		must(t, os.WriteFile(deleted, b, 0o600))
	}
	return diffTar, deleted
}

// Podman's own diffs restore onto the image they were taken from.
func TestApplyPodmanArchives(t *testing.T) {
	const page = "<p>written at runtime</p>\n"
	tests := []struct {
		archive   string
		wantGone  []string
		wantFiles map[string]string
	}{
		{
			archive:   "bb2-httpd-gzip.tar.gz",
			wantGone:  []string{"bin/ls"},
			wantFiles: map[string]string{"www/runtime.html": page},
		},
		{
			archive:   "bbloop-criu411-gzip.tar.gz",
			wantGone:  []string{"bin/ls"},
			wantFiles: map[string]string{"www/runtime.html": page, "tmp/counter": "3\n"},
		},
	}
	image := busyboxRootfs(t)
	for _, tt := range tests {
		t.Run(tt.archive, func(t *testing.T) {
			diffTar, deleted := extractDiff(t, tt.archive)
			if diffTar == "" || deleted == "" {
				t.Fatalf("archive lacks rootfs-diff.tar or deleted.files")
			}
			before := snapshot(t, image)
			dir := copyTree(t, image)
			if err := Apply(t.Context(), dir, diffTar, deleted, Limits{}); err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.wantGone {
				notExist(t, filepath.Join(dir, p))
			}
			for p, content := range tt.wantFiles {
				b, err := os.ReadFile(filepath.Join(dir, p))
				if err != nil {
					t.Errorf("%s: %v", p, err)
				} else if string(b) != content {
					t.Errorf("%s = %q, want %q", p, b, content)
				}
				fi, err := os.Lstat(filepath.Join(dir, p))
				must(t, err)
				if fi.Mode() != 0o644 {
					t.Errorf("%s: mode %v, want -rw-r--r--", p, fi.Mode())
				}
			}
			// Everything else is the image's, /bin/busybox (the target of
			// the deleted /bin/ls) included.
			after := snapshot(t, dir)
			for p, n := range before {
				if slices.Contains(tt.wantGone, p) || tt.wantFiles[p] != "" || n.Type.IsDir() {
					continue
				}
				if after[p] != n {
					t.Errorf("%s changed: %+v, was %+v", p, after[p], n)
				}
			}
		})
	}
}

// WriteDiff must reproduce Podman's rootfs-diff.tar and deleted.files byte
// for byte from the same files.
func TestWriteDiffMatchesPodman(t *testing.T) {
	requireRoot(t) // the files must belong to uid 0 as in the archives
	for _, archive := range diffArchives {
		t.Run(archive, func(t *testing.T) {
			diffTar, deleted := extractDiff(t, archive)
			wantTar, err := os.ReadFile(diffTar)
			must(t, err)
			wantDeleted, err := os.ReadFile(deleted)
			must(t, err)

			root := t.TempDir()
			c := &Changes{Added: recreate(t, root, wantTar)}
			must(t, json.Unmarshal(wantDeleted, &c.Deleted))

			out := t.TempDir()
			wroteDiff, wroteDeleted, err := WriteDiff(t.Context(), out, root, c)
			if err != nil || !wroteDiff || !wroteDeleted {
				t.Fatalf("WriteDiff = %v, %v, %v", wroteDiff, wroteDeleted, err)
			}
			for _, f := range []struct {
				name string
				want []byte
				mode os.FileMode
			}{
				{format.RootfsDiffTar, wantTar, 0o644},
				{format.DeletedFilesFile, wantDeleted, 0o600},
			} {
				p := filepath.Join(out, f.name)
				got, err := os.ReadFile(p)
				must(t, err)
				if !bytes.Equal(got, f.want) {
					t.Errorf("%s differs from Podman's:\n%s", f.name, describeDiff(got, f.want))
				}
				fi, err := os.Stat(p)
				must(t, err)
				if fi.Mode() != f.mode {
					t.Errorf("%s: mode %v, want %v", f.name, fi.Mode(), f.mode)
				}
			}
		})
	}
}

// recreate makes on disk the files a Podman rootfs-diff.tar holds (parent
// directories the tar leaves out get 0755) and returns their names as
// Changes.Added lists them.
func recreate(t *testing.T, root string, data []byte) []string {
	t.Helper()
	var names []string
	type timed struct {
		p  string
		mt time.Time
	}
	var times []timed
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		name := strings.TrimSuffix(hdr.Name, "/")
		p := filepath.Join(root, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		switch hdr.Typeflag {
		case tar.TypeDir:
			must(t, os.Mkdir(p, 0o700))
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			must(t, err)
			must(t, os.WriteFile(p, b, 0o600))
		default:
			t.Fatalf("%s: type %q not expected in the reference", hdr.Name, hdr.Typeflag)
		}
		must(t, os.Lchown(p, hdr.Uid, hdr.Gid))
		must(t, os.Chmod(p, os.FileMode(hdr.Mode&0o777)))
		times = append(times, timed{p, hdr.ModTime})
		names = append(names, name)
	}
	for i := len(times) - 1; i >= 0; i-- {
		must(t, lutimes(times[i].p, times[i].mt))
	}
	return names
}

// describeDiff shows where two tars first differ, with the ustar field.
func describeDiff(got, want []byte) string {
	if len(got) != len(want) {
		return "length " + strconv.Itoa(len(got)) + ", want " + strconv.Itoa(len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			off := i % 512
			return "byte " + strconv.Itoa(i) + " (header offset " + strconv.Itoa(off) + "): got " +
				quoteBlock(got, i) + ", want " + quoteBlock(want, i)
		}
	}
	return "equal"
}

func quoteBlock(b []byte, i int) string {
	start := i - i%512
	end := min(start+512, len(b))
	return strings.TrimRight(strings.ReplaceAll(string(b[i:min(i+16, end)]), "\x00", "\\0"), " ")
}

// The layout of a tar that Compare and WriteDiff produce is Podman's, as
// checked on its real archives: ustar without PAX or GNU records, names
// relative without "./", directories ending in "/" with the type bits in
// the mode, and no padding past the two end blocks.
func TestWriteDiffLayout(t *testing.T) {
	base := newBase(t)
	root := copyTree(t, base)
	apply(t, root,
		writeFile("etc/passwd", "changed\n", 0o644),
		writeFile("var/lib/new/state", "s\n", 0o600),
		symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
		remove("etc/motd"),
	)
	c, err := Compare(t.Context(), root, base)
	must(t, err)
	diffTar, deleted := writeChanges(t, root, c)

	tests := []struct {
		name, diffTar, deleted string
		wantNames              []string
		wantDeleted            string
	}{
		{name: "crtool", diffTar: diffTar, deleted: deleted,
			wantNames:   []string{"etc/localtime", "etc/passwd", "var/lib/new/", "var/lib/new/state"},
			wantDeleted: "[\n  \"/etc/motd\"\n]"},
	}
	for _, archive := range diffArchives {
		d, del := extractDiff(t, archive)
		tests = append(tests, struct {
			name, diffTar, deleted string
			wantNames              []string
			wantDeleted            string
		}{name: archive, diffTar: d, deleted: del})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := os.ReadFile(tt.diffTar)
			must(t, err)
			names := checkLayout(t, data)
			if tt.wantNames != nil && !slices.Equal(names, tt.wantNames) {
				t.Errorf("members %q, want %q", names, tt.wantNames)
			}
			del, err := os.ReadFile(tt.deleted)
			must(t, err)
			var paths []string
			must(t, json.Unmarshal(del, &paths))
			want, _ := json.MarshalIndent(paths, "", "  ")
			if !bytes.Equal(del, want) {
				t.Errorf("deleted.files %q is not MarshalIndent's two-space style %q", del, want)
			}
			if tt.wantDeleted != "" && string(del) != tt.wantDeleted {
				t.Errorf("deleted.files = %q, want %q", del, tt.wantDeleted)
			}
		})
	}
}

// checkLayout walks a tar's raw headers and returns the member names.
func checkLayout(t *testing.T, data []byte) []string {
	t.Helper()
	if len(data)%512 != 0 || len(data) < 1024 {
		t.Fatalf("size %d is not whole blocks", len(data))
	}
	var names []string
	off := 0
	for {
		h := data[off : off+512]
		if bytes.Equal(h, make([]byte, 512)) {
			break
		}
		name := cstr(h[0:100])
		if prefix := cstr(h[345:500]); prefix != "" {
			name = prefix + "/" + name
		}
		if magic := string(h[257:265]); magic != "ustar\x0000" {
			t.Errorf("%s: magic %q, want ustar", name, magic)
		}
		typ := h[156]
		if !strings.ContainsRune("0125", rune(typ)) {
			t.Errorf("%s: type %q, want a plain ustar type (no PAX, no GNU)", name, typ)
		}
		if strings.HasPrefix(name, "/") || strings.HasPrefix(name, "./") || slices.Contains(strings.Split(name, "/"), "..") {
			t.Errorf("%s: not a plain relative name", name)
		}
		mode := octal(t, h[100:108])
		if (typ == '5') != strings.HasSuffix(name, "/") {
			t.Errorf("%s: type %q and trailing slash disagree", name, typ)
		}
		wantType := map[byte]int64{'0': unix.S_IFREG, '1': unix.S_IFREG, '2': unix.S_IFLNK, '5': unix.S_IFDIR}[typ]
		if mode&unix.S_IFMT != wantType {
			t.Errorf("%s: mode %o lacks the file type bits %o", name, mode, wantType)
		}
		names = append(names, name)
		size := octal(t, h[124:136])
		off += 512 + int((size+511)/512*512)
	}
	if rest := data[off:]; len(rest) != 1024 || !bytes.Equal(rest, make([]byte, 1024)) {
		t.Errorf("tar ends with %d bytes after the last member, want two zero blocks", len(rest))
	}
	return names
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func octal(t *testing.T, b []byte) int64 {
	t.Helper()
	var v int64
	for _, c := range strings.TrimRight(cstr(b), " ") {
		if c < '0' || c > '7' {
			t.Fatalf("bad octal field %q", b)
		}
		v = v*8 + int64(c-'0')
	}
	return v
}
