package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestIsRoot(t *testing.T) {
	for _, tt := range []struct {
		set  Set
		want bool
	}{
		{Set{}, true},
		{Set{"freezer": "/", Unified: "/"}, true},
		{Set{"freezer": "/", "memory": "/ctr"}, false},
		{Set{Unified: "/machine.slice/ctr.scope"}, false},
	} {
		if got := tt.set.IsRoot(); got != tt.want {
			t.Errorf("%v.IsRoot() = %v, want %v", tt.set, got, tt.want)
		}
	}
}

func TestKeysSorted(t *testing.T) {
	s := Set{"name=systemd": "/a", "memory": "/a", Unified: "/a", "cpu,cpuacct": "/a"}
	want := []string{"", "cpu,cpuacct", "memory", "name=systemd"}
	if got := s.Keys(); !slices.Equal(got, want) {
		t.Fatalf("Keys = %q, want %q", got, want)
	}
}

func TestDirIn(t *testing.T) {
	for _, tt := range []struct {
		mnt, root, p, want string
		fails              bool
	}{
		{mnt: "/sys/fs/cgroup/freezer", root: "/", p: "/crtool/c1", want: "/sys/fs/cgroup/freezer/crtool/c1"},
		{mnt: "/sys/fs/cgroup/freezer", root: "/", p: "/", want: "/sys/fs/cgroup/freezer"},
		// A view of a subtree, as inside a cgroup namespace.
		{mnt: "/sys/fs/cgroup", root: "/kubepods/pod1", p: "/kubepods/pod1/ctr", want: "/sys/fs/cgroup/ctr"},
		{mnt: "/sys/fs/cgroup", root: "/kubepods/pod1", p: "/kubepods/pod1", want: "/sys/fs/cgroup"},
		{mnt: "/sys/fs/cgroup", root: "/kubepods/pod1", p: "/kubepods/pod2/ctr", fails: true},
		// A sibling sharing the root's name as a prefix is outside too.
		{mnt: "/sys/fs/cgroup", root: "/kubepods/pod1", p: "/kubepods/pod10/ctr", fails: true},
	} {
		got, err := dirIn(tt.mnt, tt.root, "memory", tt.p)
		switch {
		case tt.fails && err == nil:
			t.Errorf("dirIn(%s, %s, %s) = %s, want an error", tt.mnt, tt.root, tt.p, got)
		case tt.fails && !strings.Contains(err.Error(), "outside this mount namespace's view"):
			t.Errorf("dirIn(%s, %s, %s): %v", tt.mnt, tt.root, tt.p, err)
		case !tt.fails && (err != nil || got != tt.want):
			t.Errorf("dirIn(%s, %s, %s) = %q, %v, want %q", tt.mnt, tt.root, tt.p, got, err, tt.want)
		}
	}
}

// A fake hierarchy: mnt holds a/, and the cgroup a/b/c is to be created.
func TestToCreateParentsFirst(t *testing.T) {
	mnt := t.TempDir()
	if err := os.Mkdir(filepath.Join(mnt, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	got := toCreate(filepath.Join(mnt, "a/b/c"), mnt, exists)
	want := []string{filepath.Join(mnt, "a/b"), filepath.Join(mnt, "a/b/c")}
	if !slices.Equal(got, want) {
		t.Fatalf("toCreate = %q, want %q", got, want)
	}
	if got := toCreate(filepath.Join(mnt, "a"), mnt, exists); len(got) != 0 {
		t.Fatalf("existing cgroup: toCreate = %q", got)
	}
	// Never the mount point itself, even when it looks missing.
	if got := toCreate(filepath.Join(mnt, "x"), mnt, func(string) bool { return false }); !slices.Equal(got, []string{filepath.Join(mnt, "x")}) {
		t.Fatalf("toCreate below a missing mount = %q", got)
	}
}

// ownSet is the test's own cgroups, on hierarchies this host mounts.
func ownSet(t *testing.T) Set {
	t.Helper()
	s, err := ForPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for k := range s {
		if _, err := MountPoint(k); err != nil {
			delete(s, k)
		}
	}
	if len(s) == 0 {
		t.Fatal("no cgroup hierarchy of this process is mounted")
	}
	return s
}

// Missing only reads the host: the test's own cgroups all exist, and a
// new child of them is missing with its parent listed first.
func TestMissingOnHost(t *testing.T) {
	own := ownSet(t)
	if m, err := own.Missing(); err != nil || len(m) != 0 {
		t.Fatalf("own cgroups: Missing = %q, %v, want none", m, err)
	}
	k := own.Keys()[0]
	leaf := "crtool-unit-" + strconv.Itoa(os.Getpid())
	s := Set{k: filepath.Join(own[k], leaf, "c")}
	m, err := s.Missing()
	if err != nil {
		t.Fatal(err)
	}
	base, err := Dir(k, own[k])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(base, leaf), filepath.Join(base, leaf, "c")}
	if !slices.Equal(m, want) {
		t.Fatalf("Missing = %q, want %q", m, want)
	}
	for _, d := range m {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Missing created %s", d)
		}
	}
	if _, err := (Set{"no-such-controller": "/x"}).Missing(); err == nil {
		t.Fatal("Missing of an unmounted hierarchy did not fail")
	}
}

func TestDirsAndFreezerDir(t *testing.T) {
	own := ownSet(t)
	s := Set{"no-such-controller": "/x"}
	for k, v := range own {
		s[k] = v
	}
	dirs := s.Dirs()
	if _, ok := dirs["no-such-controller"]; ok {
		t.Fatal("Dirs includes a hierarchy the host does not mount")
	}
	if len(dirs) != len(own) {
		t.Fatalf("Dirs = %v, want one per mounted hierarchy of %v", dirs, own)
	}
	for k, d := range dirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Errorf("Dirs[%q] = %s, not a directory: %v", k, d, err)
		}
	}
	fd, err := own.FreezerDir()
	if err != nil {
		t.Fatal(err)
	}
	want := dirs["freezer"]
	if _, ok := own["freezer"]; !ok {
		want = dirs[Unified]
	}
	if fd != want {
		t.Fatalf("FreezerDir = %s, want %s", fd, want)
	}
	if _, err := (Set{"memory": "/x"}).FreezerDir(); err == nil {
		t.Fatal("FreezerDir of a set without freezer or cgroup v2 did not fail")
	}
}

func TestForPIDGone(t *testing.T) {
	if _, err := ForPID(1 << 30); err == nil || !strings.Contains(err.Error(), "cgroups of pid") {
		t.Fatalf("ForPID of no process: %v", err)
	}
}

func TestDetectLayout(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	want := V1
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		want = V2
	} else if unix.Statfs("/sys/fs/cgroup/unified", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		want = Hybrid
	}
	if got := DetectLayout(); got != want {
		t.Fatalf("DetectLayout = %s, want %s", got, want)
	}
}

// Procs reads cgroup.procs itself, so a plain directory serves as a fake
// cgroup.
func TestProcs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("10\n11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "child", "cgroup.procs"), []byte("12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if procs, err := Procs(dir); err != nil || !slices.Equal(procs, []int{10, 11}) {
		t.Fatalf("Procs = %v, %v, want only the cgroup's own", procs, err)
	}
	if _, err := Procs(filepath.Join(dir, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Procs of a missing cgroup: %v", err)
	}
}

// Pids reads the host's cgroups (the library refuses files that are not on
// cgroupfs): the test's own cgroup holds the test.
func TestPidsOnHost(t *testing.T) {
	dir, err := ownSet(t).FreezerDir()
	if err != nil {
		t.Fatal(err)
	}
	pids, err := Pids(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, os.Getpid()) {
		t.Fatalf("Pids(%s) lacks the test's own pid %d", dir, os.Getpid())
	}
	if _, err := Pids(filepath.Join(dir, "crtool-unit-gone")); err == nil || !strings.Contains(err.Error(), "list processes of cgroup") {
		t.Fatalf("Pids of a missing cgroup: %v", err)
	}
}

func TestKillGoneCgroup(t *testing.T) {
	if err := Kill(filepath.Join(t.TempDir(), "gone"), time.Second); err != nil {
		t.Fatalf("Kill of a missing cgroup: %v", err)
	}
}

// Remove goes children first: rmdir of a parent before its child fails.
func TestRemoveChildrenFirst(t *testing.T) {
	base := t.TempDir()
	dirs := []string{filepath.Join(base, "a"), filepath.Join(base, "a/b"), filepath.Join(base, "a/b/c")}
	if err := os.MkdirAll(dirs[2], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Remove(append(dirs, filepath.Join(base, "gone"))); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(dirs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s is still there: %v", dirs[0], err)
	}
}

// TestDirStaysBelowMount gives Dir cgroup paths an archive could carry
// (crtool.json's cgroups.paths, CRIU's cgroup.img) that climb out of the
// hierarchy's mount; thaw and kill would then write and read there.
func TestDirStaysBelowMount(t *testing.T) {
	mnt, err := MountPoint(Unified)
	if err != nil {
		t.Fatalf("this test needs cgroup v2 mounted: %v", err)
	}
	for _, p := range []string{"/../../../../../../tmp/x", "/a/../../../../../../etc", "x/y", "/a/..", "/a//b"} {
		d, err := Dir(Unified, p)
		if err == nil {
			t.Errorf("Dir(%q) = %s, want an error", p, d)
			continue
		}
		if !strings.Contains(err.Error(), "cgroup path") {
			t.Errorf("Dir(%q) error %q does not name the cgroup path", p, err)
		}
	}
	d, err := Dir(Unified, "/crtool-test/x")
	if err != nil || d != mnt+"/crtool-test/x" {
		t.Errorf("Dir(/crtool-test/x) = %s, %v; want %s/crtool-test/x", d, err, mnt)
	}
}
