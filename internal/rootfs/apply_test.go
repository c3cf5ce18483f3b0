package rootfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/safefs"
)

// member is one entry of a hand-made tar.
type member struct {
	typ      byte
	name     string
	linkname string
	body     string
}

func buildTar(t *testing.T, members []member) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rootfs-diff.tar")
	f, err := os.Create(p)
	must(t, err)
	tw := tar.NewWriter(f)
	for _, m := range members {
		hdr := &tar.Header{Typeflag: m.typ, Name: m.name, Linkname: m.linkname, Mode: 0o644, Size: int64(len(m.body))}
		if m.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if m.typ != tar.TypeReg {
			hdr.Size = 0
		}
		must(t, tw.WriteHeader(hdr))
		if hdr.Size > 0 {
			_, err := tw.Write([]byte(m.body))
			must(t, err)
		}
	}
	must(t, tw.Close())
	must(t, f.Close())
	return p
}

// A hostile diff must neither write nor remove anything outside the
// directory it is applied to. The tests aim at a sentinel file next to that
// directory rather than at the host's /etc.
func TestApplyHostile(t *testing.T) {
	const sentinel = "sentinel\n"
	tests := []struct {
		name      string
		evil      bool // dir holds evil -> the outside directory before Apply
		members   func(outside string) []member
		deleted   func(outside string) string
		wantInErr string // "" for success
		wantGone  []string
	}{
		{
			name:      "dotdot member",
			members:   func(string) []member { return []member{{typ: tar.TypeReg, name: "../passwd", body: "pwned"}} },
			wantInErr: `"../passwd"`,
		},
		{
			name:      "dotdot inside member",
			members:   func(string) []member { return []member{{typ: tar.TypeReg, name: "etc/../../passwd", body: "pwned"}} },
			wantInErr: `"etc/../../passwd"`,
		},
		{
			name: "absolute member",
			members: func(outside string) []member {
				return []member{{typ: tar.TypeReg, name: outside + "/passwd", body: "pwned"}}
			},
			wantInErr: "/passwd",
		},
		{
			name: "file through symlink member",
			members: func(outside string) []member {
				return []member{{typ: tar.TypeSymlink, name: "evil", linkname: outside}, {typ: tar.TypeReg, name: "evil/passwd", body: "pwned"}}
			},
			wantInErr: `"evil/passwd"`,
		},
		{
			name: "dir through symlink member",
			members: func(outside string) []member {
				return []member{{typ: tar.TypeSymlink, name: "evil", linkname: outside}, {typ: tar.TypeDir, name: "evil/sub/"}}
			},
			wantInErr: `"evil/sub/"`,
		},
		{
			name:      "file through existing symlink",
			evil:      true,
			members:   func(string) []member { return []member{{typ: tar.TypeReg, name: "evil/passwd", body: "pwned"}} },
			wantInErr: `"evil/passwd"`,
		},
		{
			name: "symlink member through existing symlink",
			evil: true,
			members: func(string) []member {
				return []member{{typ: tar.TypeSymlink, name: "evil/passwd", linkname: "/nowhere"}}
			},
			wantInErr: `"evil/passwd"`,
		},
		{
			name: "hard link to absolute path",
			members: func(outside string) []member {
				return []member{{typ: tar.TypeLink, name: "hl", linkname: outside + "/passwd"}}
			},
			wantInErr: `"hl"`,
		},
		{
			name:      "hard link to /etc/passwd",
			members:   func(string) []member { return []member{{typ: tar.TypeLink, name: "hl", linkname: "/etc/passwd"}} },
			wantInErr: `"/etc/passwd"`,
		},
		{
			name:      "hard link with dotdot",
			members:   func(string) []member { return []member{{typ: tar.TypeLink, name: "hl", linkname: "../passwd"}} },
			wantInErr: `"../passwd"`,
		},
		{
			name:      "hard link to image file",
			members:   func(string) []member { return []member{{typ: tar.TypeLink, name: "hl", linkname: "etc/passwd"}} },
			wantInErr: `"etc/passwd"`,
		},
		{
			name: "hard link through symlink member",
			members: func(outside string) []member {
				return []member{{typ: tar.TypeSymlink, name: "evil", linkname: outside}, {typ: tar.TypeLink, name: "hl", linkname: "evil/passwd"}}
			},
			wantInErr: `"evil/passwd"`,
		},
		{
			name: "hard link to member whose dir became a symlink",
			members: func(outside string) []member {
				return []member{
					{typ: tar.TypeReg, name: "d/passwd", body: "mine"},
					{typ: tar.TypeSymlink, name: "d", linkname: outside},
					{typ: tar.TypeLink, name: "hl", linkname: "d/passwd"},
				}
			},
			wantInErr: `"d/passwd"`,
		},
		{
			name:      "deleted dotdot",
			deleted:   func(string) string { return `["/../passwd"]` },
			wantInErr: `"/../passwd"`,
		},
		{
			name:      "deleted dotdot inside",
			deleted:   func(string) string { return `["/etc/../../passwd"]` },
			wantInErr: `"/etc/../../passwd"`,
		},
		{
			name:      "deleted through existing symlink",
			evil:      true,
			deleted:   func(string) string { return `["/evil/passwd"]` },
			wantInErr: `"/evil/passwd"`,
		},
		{
			name: "deleted through symlink member",
			members: func(outside string) []member {
				return []member{{typ: tar.TypeSymlink, name: "evil", linkname: outside}}
			},
			deleted:   func(string) string { return `["/evil/passwd"]` },
			wantInErr: `"/evil/passwd"`,
		},
		{
			name:      "deleted root",
			deleted:   func(string) string { return `["/"]` },
			wantInErr: `"/"`,
		},
		{
			// A deleted symlink is removed itself, not its target.
			name:     "deleted symlink to outside",
			evil:     true,
			deleted:  func(string) string { return `["/evil", "/missing/file"]` },
			wantGone: []string{"evil"},
		},
		{
			// Members may replace symlinks; they are not written through.
			name: "member replaces existing symlink",
			evil: true,
			members: func(string) []member {
				return []member{{typ: tar.TypeReg, name: "evil", body: "now a file"}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outside := t.TempDir()
			must(t, os.WriteFile(filepath.Join(outside, "passwd"), []byte(sentinel), 0o644))
			dir := filepath.Join(outside, "root")
			apply(t, dir, writeFile("etc/passwd", "image\n", 0o644))
			if tt.evil {
				must(t, os.Symlink(outside, filepath.Join(dir, "evil")))
			}
			var diffTar, deleted string
			if tt.members != nil {
				diffTar = buildTar(t, tt.members(outside))
			}
			if tt.deleted != nil {
				deleted = filepath.Join(t.TempDir(), "deleted.files")
				must(t, os.WriteFile(deleted, []byte(tt.deleted(outside)), 0o600))
			}

			err := Apply(t.Context(), dir, diffTar, deleted, Limits{})
			t.Logf("Apply: %v", err)
			if tt.wantInErr == "" {
				if err != nil {
					t.Errorf("Apply: %v", err)
				}
			} else {
				if !errors.Is(err, safefs.ErrUnsafe) {
					t.Errorf("Apply = %v, want safefs.ErrUnsafe", err)
				} else if !strings.Contains(err.Error(), tt.wantInErr) {
					t.Errorf("Apply = %v, want it to name %s", err, tt.wantInErr)
				}
			}

			b, err := os.ReadFile(filepath.Join(outside, "passwd"))
			if err != nil || string(b) != sentinel {
				t.Errorf("sentinel outside the root: %q, %v", b, err)
			}
			ents, err := os.ReadDir(outside)
			must(t, err)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if want := []string{"passwd", "root"}; !slices.Equal(names, want) {
				t.Errorf("outside the root: %q, want %q", names, want)
			}
			b, err = os.ReadFile(filepath.Join(dir, "etc/passwd"))
			if err != nil || string(b) != "image\n" {
				t.Errorf("image's etc/passwd: %q, %v", b, err)
			}
			for _, p := range tt.wantGone {
				notExist(t, filepath.Join(dir, p))
			}
		})
	}
}

// Members replace what is there, merge into directories, may carry "./"
// and create the parents they imply.
func TestApplyMembers(t *testing.T) {
	dir := newBase(t)
	diffTar := buildTar(t, []member{
		{typ: tar.TypeDir, name: "./"},
		{typ: tar.TypeReg, name: "./etc/motd", body: "replaced\n"},
		{typ: tar.TypeDir, name: "usr/"},
		{typ: tar.TypeReg, name: "new/deep/file", body: "deep\n"},
		{typ: tar.TypeSymlink, name: "opt/dir-then-file", linkname: "/elsewhere"},
		{typ: tar.TypeReg, name: "f1", body: "one\n"},
		{typ: tar.TypeLink, name: "f2", linkname: "./f1"},
		{typ: tar.TypeReg, name: "srv/a", body: "first\n"},
		{typ: tar.TypeReg, name: "srv/a", body: "second\n"},
	})
	must(t, Apply(t.Context(), dir, diffTar, "", Limits{}))
	for p, want := range map[string]string{
		"etc/motd":                 "replaced\n",
		"new/deep/file":            "deep\n",
		"usr/share/doc/pkg/README": "readme\n",
		"f2":                       "one\n",
		"srv/a":                    "second\n",
	} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "opt/dir-then-file")); err != nil || target != "/elsewhere" {
		t.Errorf("opt/dir-then-file -> %q, %v", target, err)
	}
	sameInode("f1", "f2")(t, dir)
	fi, err := os.Stat(filepath.Join(dir, "new/deep"))
	must(t, err)
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("implied parent mode %v, want 0755", fi.Mode().Perm())
	}
}

func TestApplyBadInput(t *testing.T) {
	dir := newBase(t)
	tests := []struct {
		name    string
		members []member
		deleted string
		want    error
	}{
		{name: "not JSON", deleted: `["/a"`},
		{name: "not an array of strings", deleted: `{"a": 1}`},
		{name: "contiguous file member", members: []member{{typ: tar.TypeCont, name: "c"}}, want: errdefs.ErrUnsupported},
		{name: "non-directory for the root", members: []member{{typ: tar.TypeReg, name: "."}}, want: safefs.ErrUnsafe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var diffTar, deleted string
			if tt.members != nil {
				diffTar = buildTar(t, tt.members)
			}
			if tt.deleted != "" {
				deleted = filepath.Join(t.TempDir(), "deleted.files")
				must(t, os.WriteFile(deleted, []byte(tt.deleted), 0o600))
			}
			err := Apply(t.Context(), dir, diffTar, deleted, Limits{})
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Apply = %v, want an error (%v)", err, tt.want)
			}
		})
	}
}

// TestApplyLimits: rootfs-diff.tar may not write more than the limits,
// nor expand a sparse member, nor fill the disk.
func TestApplyLimits(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < 5; i++ {
		must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("f%d", i), Mode: 0o644, Size: 1000}))
		_, err := tw.Write(make([]byte, 1000))
		must(t, err)
	}
	must(t, tw.Close())
	diffTar := filepath.Join(t.TempDir(), "rootfs-diff.tar")
	must(t, os.WriteFile(diffTar, buf.Bytes(), 0o600))
	for _, lim := range []Limits{{MaxBytes: 4000}, {MaxMembers: 4}} {
		err := Apply(t.Context(), t.TempDir(), diffTar, "", lim)
		if err == nil || !strings.Contains(err.Error(), "more than") {
			t.Errorf("%+v: err = %v", lim, err)
		}
	}
	must(t, Apply(t.Context(), t.TempDir(), diffTar, "", Limits{MaxBytes: 5000, MaxMembers: 5}))

	// A PAX sparse member of 1 TiB: refused, not expanded. Its size is
	// beyond any free space too.
	// archive/tar's writer drops GNU.sparse records and will not write an
	// extended header by hand: the blocks are made here.
	var pax string
	for _, kv := range []string{"GNU.sparse.major=1", "GNU.sparse.minor=0", "GNU.sparse.name=sparse", "GNU.sparse.realsize=1099511627776"} {
		n := len(kv) + 3
		if len(fmt.Sprint(n))+len(kv)+2 != n {
			n++
		}
		pax += fmt.Sprintf("%d %s\n", n, kv)
	}
	buf.Reset()
	buf.Write(rawHeader("PaxHeaders/sparse", 'x', int64(len(pax))))
	buf.Write(padBlock([]byte(pax)))
	buf.Write(rawHeader("GNUSparseFile.0/sparse", '0', 512))
	buf.Write(padBlock([]byte("0\n"))) // the sparse map: no data
	buf.Write(make([]byte, 1024))
	must(t, os.WriteFile(diffTar, buf.Bytes(), 0o600))
	if err := Apply(t.Context(), t.TempDir(), diffTar, "", Limits{}); err == nil || !strings.Contains(err.Error(), "sparse") {
		t.Errorf("sparse member: err = %v, want it refused", err)
	}
	buf.Reset()
	tw = tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Mode: 0o644, Size: 1 << 40}))
	must(t, os.WriteFile(diffTar, buf.Bytes(), 0o600))
	dir := t.TempDir()
	if err := Apply(t.Context(), dir, diffTar, "", Limits{MaxBytes: 1 << 41}); err == nil || !strings.Contains(err.Error(), "free") {
		t.Errorf("1 TiB member: err = %v, want it refused for free space", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "huge")); err == nil {
		t.Error("the refused member was created")
	}
}

// rawHeader is a ustar header block.
func rawHeader(name string, typeflag byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b, name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = typeflag
	copy(b[257:], "ustar\x0000")
	copy(b[148:], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func padBlock(b []byte) []byte {
	return append(b, make([]byte, (512-len(b)%512)%512)...)
}
