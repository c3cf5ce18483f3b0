package cgroups

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/cgroup"
	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/testutil"
	"github.com/crtool/crtool/internal/undo"
)

// testTop returns a unique cgroup "/crtool-test-<hex>" (the prefix the
// host cleanup knows) and removes it from every hierarchy when the test
// ends. The test needs root and the cgroup v1 cpuset controller (this
// package's reason to exist): in CI their absence fails it.
func testTop(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	_, err := MountPoint("cpuset")
	testutil.Require(t, err == nil && DetectLayout() != V2, "the test needs the cgroup v1 cpuset controller mounted")
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	top := "/crtool-test-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		for _, h := range hierarchies(top) {
			if err := Remove([]string{h.dir}); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return top
}

// hierarchies is every hierarchy this host mounts, with p's directory.
func hierarchies(p string) []hierarchyDir {
	hds, _ := allSet(p).hostDirs()
	return hds
}

// allSet puts p in every hierarchy of this host, as /proc/PID/cgroup of a
// container there would.
func allSet(p string) Set {
	own, err := ForPID(os.Getpid())
	if err != nil {
		return nil
	}
	s := Set{}
	for k := range own {
		s[k] = p
	}
	return s
}

func readValue(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func cpusetRoot(t *testing.T) string {
	t.Helper()
	mnt, err := MountPoint("cpuset")
	if err != nil {
		t.Fatal(err)
	}
	return mnt
}

// writeLeafCpuset does what CRIU does with a cgroup it creates: it makes
// the directory and writes the recorded cpus and memory nodes.
func writeLeafCpuset(dir, cpus, mems string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cpuset.cpus"), []byte(cpus), 0); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cpuset.mems"), []byte(mems), 0)
}

// TestPrepareParentsInheritCpuset is the failure seen on hosts that never
// ran the container: without Prepare, CRIU's write of the recorded cpuset
// into the container's cgroup fails under new, empty parents; after it,
// the write succeeds, and the undo removes every parent again.
func TestPrepareParentsInheritCpuset(t *testing.T) {
	top := testTop(t)
	root := cpusetRoot(t)
	cpus, mems := readValue(t, root, "cpuset.cpus"), readValue(t, root, "cpuset.mems")

	// The control: parents made by mkdir -p, as CRIU does, stay empty.
	bare := filepath.Join(root, top, "bare", "b")
	if err := os.MkdirAll(bare, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeLeafCpuset(filepath.Join(bare, "ct"), cpus, mems); err == nil {
		t.Fatal("a cpuset under empty parents took cpus: the test shows nothing")
	}
	if err := Remove([]string{filepath.Join(root, top), filepath.Join(root, top, "bare"), bare, filepath.Join(bare, "ct")}); err != nil {
		t.Fatal(err)
	}

	p := top + "/a/b/ct"
	s := allSet(p)
	var stack undo.Stack
	created, err := Prepare(s, &stack)
	if err != nil {
		t.Fatal(err)
	}
	hds := hierarchies(p)
	if len(hds) < 2 {
		t.Fatalf("found %d hierarchies, want the cpuset one and others", len(hds))
	}
	for _, hd := range hds {
		parents := []string{filepath.Join(hd.mnt, top), filepath.Join(hd.mnt, top, "a"), filepath.Join(hd.mnt, top, "a", "b")}
		i := slices.Index(created, parents[0])
		if i < 0 || len(created) < i+3 || !slices.Equal(created[i:i+3], parents) {
			t.Errorf("%s: created %v, want %v parents first", hd.key, created, parents)
		}
		if exists(hd.dir) {
			t.Errorf("%s: the container's own cgroup %s was created: CRIU would then skip its recorded limits", hd.key, hd.dir)
		}
		if hd.cpuset {
			for _, d := range parents {
				if c, m := readValue(t, d, "cpuset.cpus"), readValue(t, d, "cpuset.mems"); c != cpus || m != mems {
					t.Errorf("%s has cpus %q mems %q, want its parent's %q %q", d, c, m, cpus, mems)
				}
			}
		}
	}
	leaf := filepath.Join(root, p)
	if err := writeLeafCpuset(leaf, cpus, mems); err != nil {
		t.Fatalf("the container's cpuset does not take the host's cpus under the new parents: %v", err)
	}
	// A failed restore removes the container's cgroup first, then the
	// parents, newest first.
	if err := Remove([]string{leaf}); err != nil {
		t.Fatal(err)
	}
	if stack.Len() != len(created) {
		t.Errorf("%d undo steps for %d directories", stack.Len(), len(created))
	}
	if err := stack.Run(); err != nil {
		t.Fatal(err)
	}
	for _, hd := range hds {
		if d := filepath.Join(hd.mnt, top); exists(d) {
			t.Errorf("undo left %s", d)
		}
	}
}

// TestPrepareExistingParents uses what exists, creates only what is
// missing, and its undo removes only that.
func TestPrepareExistingParents(t *testing.T) {
	top := testTop(t)
	root := cpusetRoot(t)
	cpus := readValue(t, root, "cpuset.cpus")
	var first undo.Stack
	if _, err := Prepare(allSet(top+"/a/x"), &first); err != nil {
		t.Fatal(err)
	}
	// An existing, empty cpuset parent (left by mkdir -p) is filled, as
	// runc does: no cgroup below it could take a cpu otherwise.
	for _, hd := range hierarchies(top + "/a/empty") {
		if err := os.Mkdir(hd.dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	empty := filepath.Join(root, top, "a", "empty")

	var stack undo.Stack
	created, err := Prepare(allSet(top+"/a/empty/b/ct"), &stack)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range created {
		if !strings.HasSuffix(d, top+"/a/empty/b") {
			t.Errorf("created %s, want only the missing .../a/empty/b directories", d)
		}
	}
	if len(created) != len(hierarchies(top)) {
		t.Errorf("created %d directories, want one per hierarchy (%d)", len(created), len(hierarchies(top)))
	}
	if got := readValue(t, empty, "cpuset.cpus"); got != cpus {
		t.Errorf("existing empty cpuset parent has cpus %q, want %q", got, cpus)
	}
	if got := readValue(t, filepath.Join(empty, "b"), "cpuset.cpus"); got != cpus {
		t.Errorf("new cpuset parent has cpus %q, want %q", got, cpus)
	}

	// Again: nothing is missing, nothing is created.
	var again undo.Stack
	if more, err := Prepare(allSet(top+"/a/empty/b/ct"), &again); err != nil || len(more) != 0 || again.Len() != 0 {
		t.Errorf("second Prepare created %v (%d undo steps), %v; want nothing", more, again.Len(), err)
	}

	if err := stack.Run(); err != nil {
		t.Fatal(err)
	}
	for _, hd := range hierarchies(top + "/a/empty/b/ct") {
		if d := filepath.Join(hd.mnt, top, "a", "empty", "b"); exists(d) {
			t.Errorf("undo left %s", d)
		}
		if d := filepath.Join(hd.mnt, top, "a"); !exists(d) {
			t.Errorf("undo removed %s, which the restore found", d)
		}
	}
	if !exists(empty) {
		t.Error("undo removed an existing cpuset parent")
	}
}

// TestPrepareUndoLeavesOthersChildren: a parent another container came to
// use meanwhile stays, and that is no failure.
func TestPrepareUndoLeavesOthersChildren(t *testing.T) {
	top := testTop(t)
	var stack undo.Stack
	if _, err := Prepare(allSet(top+"/p/ct"), &stack); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(cpusetRoot(t), top, "p", "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := stack.Run(); err != nil {
		t.Fatalf("undo failed on a parent that holds another cgroup: %v", err)
	}
	if !exists(other) {
		t.Fatal("undo removed another container's cgroup")
	}
	for _, hd := range hierarchies(top + "/p/ct") {
		if d := filepath.Join(hd.mnt, top); hd.cpuset != exists(d) {
			t.Errorf("%s exists: %v; want it only where another cgroup lives below", d, exists(d))
		}
	}
}

func TestPrepareRefusesMissingController(t *testing.T) {
	top := testTop(t)
	s := Set{"cpuset": top + "/ct", "nosuchcontroller": top + "/ct"}
	var stack undo.Stack
	_, err := Prepare(s, &stack)
	if !errors.Is(err, errdefs.ErrPrecondition) || !strings.Contains(err.Error(), "nosuchcontroller") {
		t.Fatalf("err %v, want a missing-controller error naming it", err)
	}
	if stack.Len() != 0 || exists(filepath.Join(cpusetRoot(t), top)) {
		t.Error("a refused Prepare created cgroups")
	}
}

// TestAdaptImageOnHost: a recorded cpuset naming CPUs this host lacks is
// narrowed to the new parent's, which the kernel then accepts.
func TestAdaptImageOnHost(t *testing.T) {
	top := testTop(t)
	root := cpusetRoot(t)
	host, err := parseList(readValue(t, root, "cpuset.cpus"))
	if err != nil {
		t.Fatal(err)
	}
	p := top + "/a/ct"
	var stack undo.Stack
	if _, err := Prepare(allSet(p), &stack); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stack.Run(); err != nil {
			t.Error(err)
		}
	}()
	// Eight CPUs past this host's last.
	last := host[len(host)-1]
	var recorded []int
	recorded = append(recorded, host...)
	for n := last + 1; n <= last+8; n++ {
		recorded = append(recorded, n)
	}
	leaf := &cgroup.CgroupDirEntry{DirName: proto.String(strings.TrimPrefix(p, "/")), Properties: []*cgroup.CgroupPropEntry{
		{Name: proto.String("cpuset.cpus"), Value: proto.String(formatList(recorded))},
		{Name: proto.String("cpuset.mems"), Value: proto.String(readValue(t, root, "cpuset.mems"))},
	}}
	ce := &cgroup.CgroupEntry{Controllers: []*cgroup.CgControllerEntry{{Cnames: []string{"cpuset"}, Dirs: []*cgroup.CgroupDirEntry{leaf}}}}
	warnings, err := AdaptCpusets(ce, hostCpuset)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 {
		t.Fatalf("warnings %q, want one for cpuset.cpus", warnings)
	}
	t.Log(warnings[0])
	dir := filepath.Join(root, p)
	if err := writeLeafCpuset(dir, prop(leaf, "cpuset.cpus"), prop(leaf, "cpuset.mems")); err != nil {
		t.Fatalf("the adapted cpuset %q does not apply: %v", prop(leaf, "cpuset.cpus"), err)
	}
	if err := Remove([]string{dir}); err != nil {
		t.Fatal(err)
	}
}
