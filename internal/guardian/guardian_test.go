package guardian

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crtool/crtool/internal/undo"
)

// inTempDir points the journals and locks at a directory of the test's.
func inTempDir(t *testing.T) {
	t.Helper()
	old := Dir
	Dir = t.TempDir()
	t.Cleanup(func() { Dir = old })
}

func TestJournalFollowsTheStack(t *testing.T) {
	inTempDir(t)
	var stack undo.Stack
	g, err := Start("dump", "/sys/fs/cgroup/freezer/x", &stack)
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "staged")
	if err := os.WriteFile(victim, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := stack.PushRecord("remove "+victim, Remove(victim), func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	j, err := readJournal(g.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Steps) != 1 || j.Steps[0].Kind != KindRemove || j.Steps[0].Path != victim || j.Subject != "/sys/fs/cgroup/freezer/x" {
		t.Fatalf("journal = %+v", j)
	}
	// While this run holds the lock, nothing is stale and a second run on
	// the same subject is refused.
	if s, err := Leftovers(); err != nil || len(s) != 0 {
		t.Fatalf("leftovers of a live run: %v %v", s, err)
	}
	var other undo.Stack
	if _, err := Start("dump", "/sys/fs/cgroup/freezer/x", &other); err == nil || !strings.Contains(err.Error(), "by another crtool") {
		t.Fatalf("second Start = %v, want a conflict", err)
	}
	// The run dies without committing (its lock goes with its files):
	// recover carries out the journal.
	g.unlock()
	stale, err := Leftovers()
	if err != nil || len(stale) != 1 {
		t.Fatalf("leftovers = %v %v, want the dead run", stale, err)
	}
	if !strings.Contains(stale[0].Describe(), "remove "+victim) {
		t.Fatalf("Describe = %q", stale[0].Describe())
	}
	done, failed, err := Recover(t.Logf)
	if err != nil || failed != 0 || len(done) != 1 {
		t.Fatalf("Recover = %v %d %v", done, failed, err)
	}
	if _, err := os.Stat(victim); !os.IsNotExist(err) {
		t.Fatalf("recover left %s: %v", victim, err)
	}
	if _, err := os.Stat(g.path); !os.IsNotExist(err) {
		t.Fatalf("recover left the journal: %v", err)
	}
}

func TestDoneRemovesJournalAndLock(t *testing.T) {
	inTempDir(t)
	var stack undo.Stack
	g, err := Start("restore", "/srv/a.tar.gz", &stack)
	if err != nil {
		t.Fatal(err)
	}
	g.Done(&stack)
	if stack.Journal != nil {
		t.Fatal("the stack still journals after Done")
	}
	if _, err := os.Stat(g.path); !os.IsNotExist(err) {
		t.Fatalf("journal after Done: %v", err)
	}
	var again undo.Stack
	g2, err := Start("restore", "/srv/a.tar.gz", &again)
	if err != nil {
		t.Fatalf("lock not released by Done: %v", err)
	}
	g2.Done(&again)
	// Lock files do not pile up with every container.
	if locks, _ := os.ReadDir(lockDir()); len(locks) > 0 {
		t.Fatalf("%d lock files stay after Done", len(locks))
	}
	var nilGuard *Guard
	nilGuard.Done(&again) // a run that failed before it started one
}

func TestPerform(t *testing.T) {
	dir := t.TempDir()
	tmp1 := filepath.Join(dir, ".a.tar.gz.crtool-tmp-1")
	keep := filepath.Join(dir, "b.tar.gz")
	for _, p := range []string{tmp1, keep} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := Perform(RemoveGlob(filepath.Join(dir, ".a.tar.gz.crtool-tmp-*"))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp1); !os.IsNotExist(err) {
		t.Fatal("temporary archive left")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal("another archive was removed")
	}
	work := filepath.Join(dir, "crtool-dump-1")
	log := filepath.Join(work, "checkpoint", "dump.log")
	if err := os.MkdirAll(filepath.Dir(log), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{log, filepath.Join(work, "checkpoint", "pages-1.img")} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kept := filepath.Join(dir, "logs", "dump-1.log")
	if err := Perform(KeepLog(work, log, kept)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Fatal("the log was not kept")
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Fatal("the work directory, staged images and all, stays")
	}
	// Pieces already gone are done, not errors.
	for _, r := range []undo.Record{Remove(filepath.Join(dir, "gone")), Thaw(filepath.Join(dir, "no-cgroup")), KeepLog(filepath.Join(dir, "gone"), "x", filepath.Join(dir, "x.log")), DeleteLink("/run/netns/crtool-unit-gone", "veth0")} {
		if err := Perform(r); err != nil {
			t.Errorf("Perform(%+v) = %v", r, err)
		}
	}
	if err := Perform(undo.Record{Kind: "format-disk"}); err == nil {
		t.Fatal("an unknown step was performed")
	}
}
