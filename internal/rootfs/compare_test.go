package rootfs

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// baseTree is a small image root filesystem.
var baseTree = []fsOp{
	writeFile("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
	writeFile("etc/motd", "hello\n", 0o644),
	writeFile("bin/busybox", "#!busybox\n", 0o755),
	symlink("bin/ls", "busybox"),
	symlink("bin/cat", "busybox"),
	writeFile("usr/share/doc/pkg/README", "readme\n", 0o644),
	writeFile("usr/share/doc/pkg/LICENSE", "license\n", 0o644),
	writeFile("var/lib/data/db/one", "1\n", 0o600),
	writeFile("var/lib/data/two", "2\n", 0o600),
	symlink("docs", "usr/share/doc"),
	writeFile("opt/file-then-dir", "f\n", 0o644),
	writeFile("opt/dir-then-file/inner", "i\n", 0o644),
	mkdir("tmp", 0o1777),
	writeFile("srv/a", "a\n", 0o644),
}

func newBase(t *testing.T) string {
	t.Helper()
	base := filepath.Join(t.TempDir(), "base")
	must(t, os.Mkdir(base, 0o755))
	apply(t, base, baseTree...)
	setMtime(t, base)
	return base
}

// unixSocket leaves a bound socket file at rel.
func unixSocket(rel string) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		l, err := net.Listen("unix", filepath.Join(root, rel))
		must(t, err)
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
	}
}

func sameInode(a, b string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		fa, err := os.Lstat(filepath.Join(dir, a))
		must(t, err)
		fb, err := os.Lstat(filepath.Join(dir, b))
		must(t, err)
		if !os.SameFile(fa, fb) {
			t.Errorf("%s and %s are not hard links of one file", a, b)
		}
	}
}

// Compare, WriteDiff and Apply together must turn a copy of the base into
// the changed root.
func TestCompareRoundTrip(t *testing.T) {
	tests := []struct {
		name        string
		change      []fsOp
		anyLists    bool // too many changes to spell out
		wantAdded   []string
		wantDeleted []string
		notInTar    []string // listed but not archivable (sockets)
		skipTree    bool     // the change is one Podman does not carry
		check       func(t *testing.T, applied string)
	}{
		{
			name:      "add file",
			change:    []fsOp{writeFile("etc/new.conf", "new\n", 0o640)},
			wantAdded: []string{"etc/new.conf"},
		},
		{
			name:      "add dir with content",
			change:    []fsOp{writeFile("srv/new/sub/f", "f\n", 0o600), symlink("srv/new/l", "sub/f"), mkdir("srv/new/sub/empty", 0o750)},
			wantAdded: []string{"srv/new", "srv/new/l", "srv/new/sub", "srv/new/sub/empty", "srv/new/sub/f"},
		},
		{
			name:      "modify content and size",
			change:    []fsOp{writeFile("etc/passwd", "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", 0o644)},
			wantAdded: []string{"etc/passwd"},
		},
		{
			name:      "modify only mtime",
			change:    []fsOp{touch("etc/motd", time.Hour)},
			wantAdded: []string{"etc/motd"},
		},
		{
			name:      "chmod file",
			change:    []fsOp{chmod("bin/busybox", 0o4750)},
			wantAdded: []string{"bin/busybox"},
		},
		{
			name:      "file replaced by symlink",
			change:    []fsOp{remove("etc/motd"), symlink("etc/motd", "/usr/share/doc/pkg/README")},
			wantAdded: []string{"etc/motd"},
		},
		{
			name:      "symlink retargeted",
			change:    []fsOp{remove("bin/cat"), symlink("bin/cat", "../usr/bin/cat")},
			wantAdded: []string{"bin/cat"},
		},
		{
			name:        "delete file",
			change:      []fsOp{remove("usr/share/doc/pkg/LICENSE")},
			wantDeleted: []string{"/usr/share/doc/pkg/LICENSE"},
		},
		{
			name:        "delete dir with content",
			change:      []fsOp{remove("var/lib/data")},
			wantDeleted: []string{"/var/lib/data"},
		},
		{
			name:        "delete symlink",
			change:      []fsOp{remove("docs"), remove("bin/ls")},
			wantDeleted: []string{"/bin/ls", "/docs"},
		},
		{
			name:      "file replaced by dir",
			change:    []fsOp{remove("opt/file-then-dir"), writeFile("opt/file-then-dir/x", "x\n", 0o644)},
			wantAdded: []string{"opt/file-then-dir", "opt/file-then-dir/x"},
		},
		{
			name:      "dir replaced by file",
			change:    []fsOp{remove("opt/dir-then-file"), writeFile("opt/dir-then-file", "now a file\n", 0o644)},
			wantAdded: []string{"opt/dir-then-file"},
		},
		{
			name:        "dir emptied and refilled",
			change:      []fsOp{remove("srv"), writeFile("srv/b", "b\n", 0o644)},
			wantAdded:   []string{"srv/b"},
			wantDeleted: []string{"/srv/a"},
		},
		{
			name:      "fifo",
			change:    []fsOp{mkfifo("tmp/fifo")},
			wantAdded: []string{"tmp/fifo"},
		},
		{
			name:      "hard links",
			change:    []fsOp{writeFile("srv/h1", "linked\n", 0o644), hardlink("srv/h2", "srv/h1")},
			wantAdded: []string{"srv/h1", "srv/h2"},
			check:     sameInode("srv/h1", "srv/h2"),
		},
		{
			name:      "socket",
			change:    []fsOp{unixSocket("tmp/sock")},
			wantAdded: []string{"tmp/sock"},
			notInTar:  []string{"tmp/sock"},
		},
		{
			// Podman ignores mode-only changes of directories.
			name:     "dir mode only",
			change:   []fsOp{chmod("usr/share", 0o700)},
			skipTree: true,
		},
		{
			name: "all at once",
			change: []fsOp{
				writeFile("etc/new.conf", "new\n", 0o640),
				writeFile("srv/new/sub/f", "f\n", 0o600), symlink("srv/new/l", "sub/f"),
				writeFile("etc/passwd", "changed\n", 0o644),
				touch("usr/share/doc/pkg/README", -time.Hour),
				chmod("bin/busybox", 0o4750),
				remove("etc/motd"), symlink("etc/motd", "/usr/share/doc/pkg/README"),
				remove("usr/share/doc/pkg/LICENSE"),
				remove("var/lib/data"),
				remove("docs"), remove("bin/ls"),
				remove("opt/file-then-dir"), writeFile("opt/file-then-dir/x", "x\n", 0o644),
				remove("opt/dir-then-file"), writeFile("opt/dir-then-file", "now a file\n", 0o644),
				mkfifo("tmp/fifo"),
				writeFile("srv/h1", "linked\n", 0o644), hardlink("srv/h2", "srv/h1"),
				remove("srv/a"),
			},
			anyLists: true,
			check:    sameInode("srv/h1", "srv/h2"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := newBase(t)
			root := copyTree(t, base)
			apply(t, root, tt.change...)

			c, err := Compare(t.Context(), root, base)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.anyLists {
				if !slices.Equal(c.Added, tt.wantAdded) {
					t.Errorf("Added = %q, want %q", c.Added, tt.wantAdded)
				}
				if !slices.Equal(c.Deleted, tt.wantDeleted) {
					t.Errorf("Deleted = %q, want %q", c.Deleted, tt.wantDeleted)
				}
			}

			diffTar, deleted := writeChanges(t, root, c)
			checkTarNames(t, root, diffTar, c, tt.notInTar)
			if (deleted != "") != (len(c.Deleted) > 0) {
				t.Errorf("deleted.files written: %v, want it with %d deleted paths", deleted != "", len(c.Deleted))
			}

			applied := copyTree(t, base)
			if err := Apply(t.Context(), applied, diffTar, deleted, Limits{}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !tt.skipTree {
				want := snapshot(t, root)
				for _, p := range tt.notInTar {
					delete(want, p)
				}
				sameTree(t, snapshot(t, applied), want)
			}
			if tt.check != nil {
				tt.check(t, applied)
			}
		})
	}
}

// checkTarNames checks that the tar holds exactly c.Added (but notInTar),
// directories with a trailing slash, and is absent when that is empty.
func checkTarNames(t *testing.T, root, diffTar string, c *Changes, notInTar []string) {
	t.Helper()
	var want []string
	for _, a := range c.Added {
		if slices.Contains(notInTar, a) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(root, a))
		must(t, err)
		if fi.IsDir() {
			a += "/"
		}
		want = append(want, a)
	}
	if len(want) == 0 {
		if diffTar != "" {
			t.Errorf("rootfs-diff.tar written with nothing to archive")
		}
		return
	}
	if diffTar == "" {
		t.Fatalf("rootfs-diff.tar not written, want %q", want)
	}
	if got := tarNames(t, diffTar); !slices.Equal(got, want) {
		t.Errorf("tar members = %q, want %q", got, want)
	}
}

func TestCompareDevices(t *testing.T) {
	requireRoot(t)
	base := newBase(t)
	must(t, syscall.Mknod(filepath.Join(base, "null"), syscall.S_IFCHR|0o666, int(mkdev(1, 3))))
	root := copyTree(t, base)
	must(t, os.Remove(filepath.Join(root, "null")))
	must(t, syscall.Mknod(filepath.Join(root, "null"), syscall.S_IFCHR|0o666, int(mkdev(1, 5))))
	must(t, syscall.Mknod(filepath.Join(root, "loop"), syscall.S_IFBLK|0o660, int(mkdev(7, 0))))
	c, err := Compare(t.Context(), root, base)
	must(t, err)
	if want := []string{"loop", "null"}; !slices.Equal(c.Added, want) {
		t.Errorf("Added = %q, want %q", c.Added, want)
	}
	diffTar, deleted := writeChanges(t, root, c)
	// Device nodes from an archive need the operator's say.
	refused := copyTree(t, base)
	if err := Apply(t.Context(), refused, diffTar, deleted, Limits{}); err == nil || !strings.Contains(err.Error(), "AllowDevices") {
		t.Errorf("devices without AllowDevices: %v", err)
	}
	applied := copyTree(t, base)
	must(t, Apply(t.Context(), applied, diffTar, deleted, Limits{AllowDevices: true}))
	sameTree(t, snapshot(t, applied), snapshot(t, root))
}

func TestCancelled(t *testing.T) {
	base := newBase(t)
	root := copyTree(t, base)
	apply(t, root, writeFile("new", "n\n", 0o644), remove("etc/motd"))
	c, err := Compare(t.Context(), root, base)
	must(t, err)
	diffTar, deleted := writeChanges(t, root, c)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		run  func() error
	}{
		{"Compare", func() error { _, err := Compare(ctx, root, base); return err }},
		{"FromOverlay", func() error { _, err := FromOverlay(ctx, root, []string{base}); return err }},
		{"WriteDiff", func() error { _, _, err := WriteDiff(ctx, t.TempDir(), root, c); return err }},
		{"Apply", func() error { return Apply(ctx, copyTree(t, base), diffTar, deleted, Limits{}) }},
		{"Apply deleted only", func() error { return Apply(ctx, copyTree(t, base), "", deleted, Limits{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
		})
	}
}

func TestWithout(t *testing.T) {
	c := &Changes{
		Added:   []string{"dev", "etc/hosts", "etc/hosts.allow", "run", "run/nginx.pid", "tmp/x"},
		Deleted: []string{"/etc/resolv.conf", "/etc/motd"},
	}
	got := c.Without(RuntimePaths...)
	if want := []string{"etc/hosts.allow", "run/nginx.pid", "tmp/x"}; !slices.Equal(got.Added, want) {
		t.Errorf("Added = %q, want %q", got.Added, want)
	}
	if want := []string{"/etc/motd"}; !slices.Equal(got.Deleted, want) {
		t.Errorf("Deleted = %q, want %q", got.Deleted, want)
	}
}
