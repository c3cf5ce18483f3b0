package rootfs

import (
	"archive/tar"
	"errors"
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

			err := Apply(t.Context(), dir, diffTar, deleted)
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
	must(t, Apply(t.Context(), dir, diffTar, ""))
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
			err := Apply(t.Context(), dir, diffTar, deleted)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Apply = %v, want an error (%v)", err, tt.want)
			}
		})
	}
}
