package rootfs

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/testutil"
)

// node is what the tree comparisons look at for one path. Directory mtimes
// are left out: creating content moves them. Other mtimes are kept to the
// second, as ustar stores them.
type node struct {
	Type    fs.FileMode
	Mode    fs.FileMode
	UID     uint32
	GID     uint32
	Content string
	Target  string
	Rdev    uint64
	Mtime   int64
}

// snapshot records every path below dir (not dir itself), never following
// symlinks.
func snapshot(t *testing.T, dir string) map[string]node {
	t.Helper()
	tree := make(map[string]node)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := node{
			Type: fi.Mode().Type(),
			Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
			UID:  st.Uid,
			GID:  st.Gid,
		}
		if !fi.IsDir() {
			n.Mtime = fi.ModTime().Round(time.Second).Unix()
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.Content = string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			n.Target, err = os.Readlink(p)
			if err != nil {
				return err
			}
			n.Mode = 0 // not meaningful on Linux
		case fi.Mode()&fs.ModeDevice != 0:
			n.Rdev = st.Rdev
		}
		tree[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return tree
}

// sameTree reports every difference between two snapshots.
func sameTree(t *testing.T, got, want map[string]node) {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		g, gok := got[p]
		w, wok := want[p]
		switch {
		case !gok:
			t.Errorf("%s: missing, want %+v", p, w)
		case !wok:
			t.Errorf("%s: unexpected %+v", p, g)
		case g != w:
			t.Errorf("%s: got %+v, want %+v", p, g, w)
		}
	}
}

// copyTree copies src to a new directory, preserving everything (cp -a).
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	run(t, "cp", "-a", src, dst)
	return dst
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// fsOp is one step of building or changing a test tree.
type fsOp func(t *testing.T, root string)

func apply(t *testing.T, root string, ops ...fsOp) {
	t.Helper()
	for _, op := range ops {
		op(t, root)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(rel, content string, mode fs.FileMode) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(content), mode))
		must(t, os.Chmod(p, mode)) // past the umask
	}
}

func mkdir(rel string, mode fs.FileMode) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(t, os.MkdirAll(p, 0o755))
		must(t, os.Chmod(p, mode))
	}
}

func symlink(rel, target string) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.Symlink(target, p))
	}
}

func hardlink(rel, target string) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		must(t, os.Link(filepath.Join(root, target), filepath.Join(root, rel)))
	}
}

func mkfifo(rel string) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		must(t, syscall.Mkfifo(filepath.Join(root, rel), 0o640))
	}
}

func remove(rel string) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		must(t, os.RemoveAll(filepath.Join(root, rel)))
	}
}

func chmod(rel string, mode fs.FileMode) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		must(t, os.Chmod(filepath.Join(root, rel), mode))
	}
}

// touch moves rel's mtime by d, keeping its content.
func touch(rel string, d time.Duration) fsOp {
	return func(t *testing.T, root string) {
		t.Helper()
		p := filepath.Join(root, rel)
		fi, err := os.Lstat(p)
		must(t, err)
		must(t, os.Chtimes(p, fi.ModTime().Add(d), fi.ModTime().Add(d)))
	}
}

// setMtime gives every non-directory below root the same old mtime, so that
// a test's changes (made "now") always differ from the base's.
func setMtime(t *testing.T, root string) {
	t.Helper()
	old := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return lutimes(p, old)
	})
	must(t, err)
}

func lutimes(p string, tm time.Time) error {
	ts := unix.NsecToTimespec(tm.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// writeChanges runs WriteDiff into a new directory and returns the paths
// to hand Apply ("" for a file not written).
func writeChanges(t *testing.T, root string, c *Changes) (diffTar, deleted string) {
	t.Helper()
	out := t.TempDir()
	wroteDiff, wroteDeleted, err := WriteDiff(t.Context(), out, root, c)
	if err != nil {
		t.Fatalf("WriteDiff: %v", err)
	}
	if wroteDiff {
		diffTar = filepath.Join(out, format.RootfsDiffTar)
	}
	if wroteDeleted {
		deleted = filepath.Join(out, format.DeletedFilesFile)
	}
	return diffTar, deleted
}

// tarNames lists the member names of the tar at p.
func tarNames(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		must(t, err)
		names = append(names, hdr.Name)
	}
}

// archiveMembers reads the named members of a gzip'd reference archive;
// absent ones are left out of the result.
func archiveMembers(t *testing.T, archive string, names ...string) map[string][]byte {
	t.Helper()
	ref := testutil.RequireReference(t)
	f, err := os.Open(filepath.Join(ref, "archives", archive))
	must(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	must(t, err)
	want := make(map[string]bool)
	for _, n := range names {
		want[n] = true
	}
	got := make(map[string][]byte)
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return got
		}
		must(t, err)
		if want[hdr.Name] {
			b, err := io.ReadAll(tr)
			must(t, err)
			got[hdr.Name] = b
		}
	}
}

// busyboxRootfs unpacks the reference busybox image (a gzip'd `podman
// save` docker-archive) into a new directory: its layers, in manifest
// order, with GNU tar.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	ref := testutil.RequireReference(t)
	tmp := t.TempDir()
	run(t, "tar", "-xzf", filepath.Join(ref, "archives", "crtest-busybox-image.docker-archive.tar.gz"), "-C", tmp)
	b, err := os.ReadFile(filepath.Join(tmp, "manifest.json"))
	must(t, err)
	var manifest []struct{ Layers []string }
	must(t, json.Unmarshal(b, &manifest))
	if len(manifest) != 1 || len(manifest[0].Layers) == 0 {
		t.Fatalf("manifest.json: want one image with layers, got %s", b)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	must(t, os.Mkdir(root, 0o755))
	for _, l := range manifest[0].Layers {
		run(t, "tar", "--numeric-owner", "-xpf", filepath.Join(tmp, l), "-C", root)
	}
	// The image has a single layer; whiteouts of later layers would need
	// handling here.
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".wh.") {
			return fmt.Errorf("whiteout %s not handled", p)
		}
		return err
	})
	must(t, err)
	return root
}

// notExist fails unless p is absent.
func notExist(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: want it gone, got %v", p, err)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
}

func mkdev(major, minor uint32) uint64 { return unix.Mkdev(major, minor) }
