package cgroups

import (
	"errors"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/cgroup"
	"google.golang.org/protobuf/proto"
)

func TestFitList(t *testing.T) {
	for _, tc := range []struct {
		want, allowed, fitted string
	}{
		{"0-1", "0-1", "0-1"},
		{"0-7", "0-1", "0-1"},
		{"1", "0-3", "1"},
		{"2-5,9", "0-3,8-9", "2-3,9"},
		{"6-7", "0-1", "0-1"}, // nothing in common: the parent's whole set
		{"0,1,2", "0-3", "0,1,2"},
		{"0", "0", "0"},
		{"1-2,0", "0", "0"},
	} {
		got, err := fitList(tc.want, tc.allowed)
		if err != nil || got != tc.fitted {
			t.Errorf("fitList(%q, %q) = %q, %v; want %q", tc.want, tc.allowed, got, err, tc.fitted)
		}
	}
	for _, bad := range []string{"x", "3-1", "-1", "1-", "99999999"} {
		if _, err := fitList(bad, "0-1"); err == nil {
			t.Errorf("fitList(%q) accepted a bad list", bad)
		}
	}
}

func TestListRoundTrip(t *testing.T) {
	for in, want := range map[string]string{
		"0-3,8":     "0-3,8",
		"3,1,2,0,8": "0-3,8",
		"0-1,1-2":   "0-2",
		"5":         "5",
		"":          "",
		"0-1\n":     "0-1",
	} {
		ns, err := parseList(in)
		if err != nil {
			t.Fatalf("parseList(%q): %v", in, err)
		}
		if got := formatList(ns); got != want {
			t.Errorf("formatList(parseList(%q)) = %q, want %q", in, got, want)
		}
	}
}

func cpusetDir(name string, cpus, mems string, children ...*cgroup.CgroupDirEntry) *cgroup.CgroupDirEntry {
	d := &cgroup.CgroupDirEntry{DirName: proto.String(name), Children: children}
	d.Properties = []*cgroup.CgroupPropEntry{
		{Name: proto.String("cpuset.cpus"), Value: proto.String(cpus)},
		{Name: proto.String("cpuset.mems"), Value: proto.String(mems)},
		{Name: proto.String("cpuset.sched_load_balance"), Value: proto.String("1")},
	}
	return d
}

func prop(d *cgroup.CgroupDirEntry, name string) string {
	for _, p := range d.GetProperties() {
		if p.GetName() == name {
			return p.GetValue()
		}
	}
	return ""
}

func TestAdaptCpusets(t *testing.T) {
	child := cpusetDir("sub", "4-7", "1")
	leaf := cpusetDir("libpod_parent/libpod-1", "0-7", "0-1", child)
	other := &cgroup.CgroupDirEntry{DirName: proto.String("libpod_parent/libpod-1"), Properties: []*cgroup.CgroupPropEntry{
		{Name: proto.String("memory.limit_in_bytes"), Value: proto.String("0-7")},
	}}
	ce := &cgroup.CgroupEntry{Controllers: []*cgroup.CgControllerEntry{
		{Cnames: []string{"cpuset"}, Dirs: []*cgroup.CgroupDirEntry{leaf}},
		{Cnames: []string{"memory"}, Dirs: []*cgroup.CgroupDirEntry{other}},
	}}
	var asked []string
	warnings, err := AdaptCpusets(ce, func(p string) (Cpuset, error) {
		asked = append(asked, p)
		return Cpuset{Cpus: "0-1", Mems: "0"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || asked[0] != "/libpod_parent" {
		t.Errorf("asked the host for %v, want the leaf's parent /libpod_parent only", asked)
	}
	if prop(leaf, "cpuset.cpus") != "0-1" || prop(leaf, "cpuset.mems") != "0" {
		t.Errorf("leaf adapted to cpus %q mems %q, want 0-1 and 0", prop(leaf, "cpuset.cpus"), prop(leaf, "cpuset.mems"))
	}
	// The child had only CPUs the leaf no longer has: it gets the leaf's.
	if prop(child, "cpuset.cpus") != "0-1" || prop(child, "cpuset.mems") != "0" {
		t.Errorf("child adapted to cpus %q mems %q, want 0-1 and 0", prop(child, "cpuset.cpus"), prop(child, "cpuset.mems"))
	}
	if prop(leaf, "cpuset.sched_load_balance") != "1" || prop(other, "memory.limit_in_bytes") != "0-7" {
		t.Error("properties other than the v1 cpuset's were changed")
	}
	if len(warnings) != 4 {
		t.Fatalf("warnings %q, want one per changed value (4)", warnings)
	}
	if w := warnings[0]; !strings.Contains(w, "cpuset/libpod_parent/libpod-1") || !strings.Contains(w, "0-7") || !strings.Contains(w, "restoring with 0-1") {
		t.Errorf("warning %q does not name the cgroup, the recorded and the new value", w)
	}
	if strings.Contains(strings.Join(warnings, "\n"), "\n\n") {
		t.Error("empty warning line")
	}
}

func TestAdaptCpusetsFitsUnchanged(t *testing.T) {
	leaf := cpusetDir("ct", "1", "0")
	ce := &cgroup.CgroupEntry{Controllers: []*cgroup.CgControllerEntry{{Cnames: []string{"cpuset"}, Dirs: []*cgroup.CgroupDirEntry{leaf}}}}
	warnings, err := AdaptCpusets(ce, func(string) (Cpuset, error) { return Cpuset{Cpus: "0-3", Mems: "0"}, nil })
	if err != nil || len(warnings) != 0 || prop(leaf, "cpuset.cpus") != "1" {
		t.Errorf("a fitting cpuset changed: %q, %v, cpus %q", warnings, err, prop(leaf, "cpuset.cpus"))
	}
	// Without a v1 cpuset on the host (cgroup v2) nothing changes.
	warnings, err = AdaptCpusets(ce, func(string) (Cpuset, error) { return Cpuset{}, nil })
	if err != nil || len(warnings) != 0 {
		t.Errorf("adapted without a host cpuset: %q, %v", warnings, err)
	}
}

func TestAdaptCpusetsErrors(t *testing.T) {
	ce := &cgroup.CgroupEntry{Controllers: []*cgroup.CgControllerEntry{{Cnames: []string{"cpuset"}, Dirs: []*cgroup.CgroupDirEntry{cpusetDir("ct", "zero", "0")}}}}
	if _, err := AdaptCpusets(ce, func(string) (Cpuset, error) { return Cpuset{Cpus: "0-1", Mems: "0"}, nil }); err == nil {
		t.Error("a corrupt recorded cpu list was accepted")
	}
	boom := errors.New("boom")
	if _, err := AdaptCpusets(ce, func(string) (Cpuset, error) { return Cpuset{}, boom }); !errors.Is(err, boom) {
		t.Errorf("host error lost: %v", err)
	}
}
