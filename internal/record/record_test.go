package record

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/errdefs"
)

func useDir(t *testing.T) {
	old := Dir
	Dir = filepath.Join(t.TempDir(), "run", "containers")
	t.Cleanup(func() { Dir = old })
}

func TestSaveLoadListDelete(t *testing.T) {
	useDir(t)
	self, err := Identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	a := &Record{Name: "web", Archive: "/a.tar.gz", Restored: time.Now().UTC().Truncate(time.Second), Init: self,
		Netns: &Netns{Path: "/run/netns/web", Created: true}, Links: []Link{{Name: "veth1", Kind: "veth", Netns: "host"}},
		Cgroups: map[string]string{"": "/ct/web"}, CgroupDirs: []string{"/sys/fs/cgroup/ct", "/sys/fs/cgroup/ct/web"}}
	b := &Record{Name: "db", Init: self}
	for _, r := range []*Record{a, b} {
		if err := Save(r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Load("web")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("loaded %+v, saved %+v", got, a)
	}
	list, err := List()
	if err != nil || len(list) != 2 || list[0].Name != "db" || list[1].Name != "web" {
		t.Fatalf("List = %v, %v", list, err)
	}
	// No temporary file stays beside the records.
	entries, _ := os.ReadDir(Dir)
	if len(entries) != 2 {
		t.Fatalf("%d entries in %s, want the 2 records", len(entries), Dir)
	}
	for _, n := range []string{"web", "db", "web"} {
		if err := Delete(n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(Dir); !os.IsNotExist(err) {
		t.Fatalf("%s stays after its last record: %v", Dir, err)
	}
	if _, err := Load("web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Load of a deleted record: %v, want not found", err)
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{"web": true, "web-1.2_x": true, "": false, ".": false, "..": false, "../x": false, "a/b": false, ".hidden": false} {
		if err := ValidName(name); (err == nil) != ok {
			t.Errorf("ValidName(%q) = %v", name, err)
		}
	}
}

// A PID is the recorded process only with the recorded start time: one
// that reused the PID is not it.
func TestAliveNeedsTheStartTime(t *testing.T) {
	self, err := Identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !self.Alive() {
		t.Fatal("this process is not alive")
	}
	reused := self
	reused.StartTime++
	if reused.Alive() {
		t.Fatal("a process with another start time counts as the recorded one")
	}
	otherBoot := self
	otherBoot.BootID = "00000000-0000-0000-0000-000000000000"
	if otherBoot.Alive() {
		t.Fatal("a process of another boot counts as alive")
	}
	if d := time.Since(self.Started()); d < 0 || d > time.Hour*24*365 {
		t.Fatalf("started %v ago", d)
	}
	if (Process{PID: 1 << 30}).Alive() {
		t.Fatal("a PID that does not exist is alive")
	}
}
