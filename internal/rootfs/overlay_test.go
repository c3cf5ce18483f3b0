package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/errdefs"
)

// mountOverlay mounts an overlayfs of lowers (top first) and, unless upper
// is "", upper on a new directory and returns it with its unmount. The
// options pin the features FromOverlay refuses to off, whatever the
// kernel's defaults.
func mountOverlay(t *testing.T, lowers []string, upper string) (merged string, unmount func()) {
	t.Helper()
	merged = filepath.Join(t.TempDir(), "merged")
	must(t, os.Mkdir(merged, 0o755))
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if upper != "" {
		work := filepath.Join(t.TempDir(), "work")
		must(t, os.Mkdir(work, 0o755))
		opts += ",upperdir=" + upper + ",workdir=" + work + ",redirect_dir=off,metacopy=off,index=off"
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	mounted := true
	unmount = func() {
		t.Helper()
		if mounted {
			mounted = false
			must(t, unix.Unmount(merged, 0))
		}
	}
	t.Cleanup(func() {
		if mounted {
			unix.Unmount(merged, unix.MNT_DETACH)
		}
	})
	return merged, unmount
}

// whiteout makes an overlayfs whiteout (character device 0:0) at rel.
func whiteout(rel string) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, unix.Mknod(p, unix.S_IFCHR|0o000, 0))
	}
}

func setXattr(rel, attr, value string) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		must(t, unix.Lsetxattr(filepath.Join(root, rel), attr, []byte(value), 0))
	}
}

// containerChanges are made through the merged directory, against baseTree.
var containerChanges = []fsOp{
	writeFile("etc/new.conf", "new\n", 0o640),
	writeFile("srv/new/sub/f", "f\n", 0o600),
	writeFile("etc/motd", "changed\n", 0o644),
	remove("bin/ls"),
	remove("var/lib/data"),
	// Opaque usr/share/doc holding a new pkg: the image's pkg content
	// must go although pkg itself is back.
	remove("usr/share/doc"), writeFile("usr/share/doc/pkg/NEW", "new doc\n", 0o644),
	// Opaque directory over a file, a file over a directory.
	remove("opt/file-then-dir"), writeFile("opt/file-then-dir/x", "x\n", 0o644),
	remove("opt/dir-then-file"), writeFile("opt/dir-then-file", "a file\n", 0o644),
	chmod("bin/busybox", 0o4755),
	remove("docs"),
	remove("etc/passwd"), symlink("etc/passwd", "/dev/null"),
	touch("srv/a", 3600e9),
	mkfifo("tmp/fifo"),
}

// A second image layer on top of baseTree, in overlay format.
var topLayer = []fsOp{
	whiteout("etc/motd"),
	writeFile("etc/extra", "extra\n", 0o644),
	writeFile("var/lib/data/fresh", "fresh\n", 0o644),
	setXattr("var/lib/data", "trusted.overlay.opaque", "y"),
	writeFile("usr/share/doc/pkg/L2DOC", "l2\n", 0o644),
	writeFile("usr/share/doc/other", "other\n", 0o644),
	whiteout("usr/share/doc/pkg/LICENSE"),
	writeFile("opt/l2file", "l2\n", 0o644),
}

// FromOverlay, WriteDiff and Apply together must turn a copy of the image
// into what the container saw through the overlay mount.
func TestFromOverlay(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name        string
		layers      [][]fsOp // top first
		wantAdded   []string
		wantDeleted []string
	}{
		{
			name:   "one lower",
			layers: [][]fsOp{baseTree},
			wantAdded: []string{
				"bin/busybox",
				"etc/motd", "etc/new.conf", "etc/passwd",
				"opt/dir-then-file", "opt/file-then-dir", "opt/file-then-dir/x",
				"srv/a", "srv/new", "srv/new/sub", "srv/new/sub/f",
				"tmp/fifo",
				"usr/share/doc/pkg", "usr/share/doc/pkg/NEW",
			},
			wantDeleted: []string{
				"/bin/ls", "/docs",
				"/usr/share/doc/pkg/LICENSE", "/usr/share/doc/pkg/README",
				"/var/lib/data",
			},
		},
		{
			name:   "two lowers with whiteouts and an opaque dir",
			layers: [][]fsOp{topLayer, baseTree},
			wantDeleted: []string{
				"/bin/ls", "/docs",
				"/usr/share/doc/other",
				"/usr/share/doc/pkg/L2DOC", "/usr/share/doc/pkg/README",
				"/var/lib/data",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lowers []string
			for _, ops := range tt.layers {
				l := filepath.Join(t.TempDir(), "layer")
				must(t, os.Mkdir(l, 0o755))
				apply(t, l, ops...)
				setMtime(t, l)
				lowers = append(lowers, l)
			}
			image := lowers[0]
			if len(lowers) > 1 {
				view, unmount := mountOverlay(t, lowers, "")
				image = copyTree(t, view)
				unmount()
			}

			upper := filepath.Join(t.TempDir(), "upper")
			must(t, os.Mkdir(upper, 0o755))
			merged, unmount := mountOverlay(t, lowers, upper)
			apply(t, merged, containerChanges...)
			want := snapshot(t, merged)
			unmount()

			c, err := FromOverlay(t.Context(), upper, lowers)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantAdded != nil && !slices.Equal(c.Added, tt.wantAdded) {
				t.Errorf("Added = %q, want %q", c.Added, tt.wantAdded)
			}
			if !slices.Equal(c.Deleted, tt.wantDeleted) {
				t.Errorf("Deleted = %q, want %q", c.Deleted, tt.wantDeleted)
			}

			diffTar, deleted := writeChanges(t, upper, c)
			applied := copyTree(t, image)
			if err := Apply(t.Context(), applied, diffTar, deleted, Limits{}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			sameTree(t, snapshot(t, applied), want)
		})
	}
}

// Upper directories whose content lives elsewhere are refused; whiteouts
// in the xattr form count as deleted.
func TestFromOverlayXattrs(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name        string
		upper       []fsOp
		want        error
		wantDeleted []string
	}{
		{
			name:  "redirect",
			upper: []fsOp{mkdir("moved", 0o755), setXattr("moved", "trusted.overlay.redirect", "/orig")},
			want:  errdefs.ErrUnsupported,
		},
		{
			name:  "metacopy",
			upper: []fsOp{writeFile("etc/motd", "", 0o644), setXattr("etc/motd", "trusted.overlay.metacopy", "")},
			want:  errdefs.ErrUnsupported,
		},
		{
			name:        "xattr whiteout",
			upper:       []fsOp{writeFile("etc/motd", "", 0o644), setXattr("etc/motd", "trusted.overlay.whiteout", "")},
			wantDeleted: []string{"/etc/motd"},
		},
		{
			// "x" marks a directory holding xattr whiteouts, it is not opaque.
			name:  "opaque x is not opaque",
			upper: []fsOp{mkdir("etc", 0o755), setXattr("etc", "trusted.overlay.opaque", "x")},
		},
	}
	t.Run("missing lower", func(t *testing.T) {
		if _, err := FromOverlay(t.Context(), t.TempDir(), []string{"l/relative"}); err == nil {
			t.Error("FromOverlay accepted a missing lower directory")
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lower := newBase(t)
			upper := t.TempDir()
			apply(t, upper, tt.upper...)
			c, err := FromOverlay(t.Context(), upper, []string{lower})
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Errorf("FromOverlay = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Deleted, tt.wantDeleted) {
				t.Errorf("Deleted = %q, want %q", c.Deleted, tt.wantDeleted)
			}
		})
	}
}
