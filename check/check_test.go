package check

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/internal/criu"
)

func TestPrivilegesOf(t *testing.T) {
	const all = 1<<21 | 1<<19 | 1<<12 | 1<<5
	for _, tt := range []struct {
		name      string
		euid      int
		eff       uint64
		ok        bool
		value     string
		fixSubstr string
	}{
		{name: "not root", euid: 1000, eff: ^uint64(0), value: "euid 1000", fixSubstr: "as root"},
		{name: "full root", euid: 0, eff: all | 1<<24, ok: true, value: "root with the capabilities CRIU needs"},
		{name: "no CAP_SYS_RESOURCE", euid: 0, eff: all, ok: true, value: "no CAP_SYS_RESOURCE"},
		{name: "restricted", euid: 0, eff: 1 << 12, value: "root, missing CAP_KILL, CAP_SYS_ADMIN, CAP_SYS_PTRACE", fixSubstr: "full root capabilities"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			it := privilegesOf(tt.euid, tt.eff)
			if it.OK != tt.ok || !strings.Contains(it.Value, tt.value) || !strings.Contains(it.Fix, tt.fixSubstr) {
				t.Fatalf("privilegesOf(%d, %#x) = %+v", tt.euid, tt.eff, it)
			}
			if !it.OK && it.Fix == "" {
				t.Fatal("a failed item without a fix")
			}
		})
	}
}

func TestCapEffOf(t *testing.T) {
	status := "Name:\tcat\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n"
	if got := capEffOf(strings.NewReader(status)); got != 0x1ffffffffff {
		t.Fatalf("capEffOf = %#x", got)
	}
	if got := capEffOf(strings.NewReader("Name:\tcat\n")); got != 0 {
		t.Fatalf("capEffOf without CapEff = %#x", got)
	}
}

func TestReportOK(t *testing.T) {
	r := &Report{Items: []Item{{Name: "a", OK: true}, {Name: "b", OK: true}}}
	if !r.OK() {
		t.Fatal("all items OK, report not")
	}
	r.add(Item{Name: "c"})
	if r.OK() {
		t.Fatal("a failed item, report OK")
	}
}

func TestLastLine(t *testing.T) {
	if got := lastLine("Warn: x\nLooks good.\n\n"); got != "Looks good." {
		t.Fatalf("lastLine = %q", got)
	}
	if got := lastLine(""); got != "" {
		t.Fatalf("lastLine of nothing = %q", got)
	}
}

// fakeCRIU writes a script that answers like CRIU: its version, its own
// check (failing with checkRC), and the nftables feature (failing with
// nftRC).
func fakeCRIU(t *testing.T, version string, checkRC, nftRC int) string {
	t.Helper()
	// The version cache lives under /run; a fake binary must not touch it.
	old := criu.VersionCache
	criu.VersionCache = ""
	t.Cleanup(func() { criu.VersionCache = old })
	p := filepath.Join(t.TempDir(), "criu")
	script := `#!/bin/sh
case "$1" in
--version) echo "Version: ` + version + `"; echo "GitID: v` + version + `" ;;
check)
	if [ "$2" = --feature ]; then echo "feature $3"; exit ` + strconv.Itoa(nftRC) + `; fi
	echo "Warn: something optional"; echo "Looks good."; exit ` + strconv.Itoa(checkRC) + ` ;;
*) exit 2 ;;
esac
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func item(t *testing.T, r *Report, name string) Item {
	t.Helper()
	for _, it := range r.Items {
		if it.Name == name {
			return it
		}
	}
	t.Fatalf("report has no %q item: %+v", name, r.Items)
	return Item{}
}

func TestRunWithFakeCRIU(t *testing.T) {
	ctx := context.Background()
	t.Run("good", func(t *testing.T) {
		p := fakeCRIU(t, "4.2.1", 0, 0)
		r := Run(ctx, Options{CRIUPath: p})
		if it := item(t, r, "criu"); !it.OK || !strings.Contains(it.Value, p) || !strings.Contains(it.Value, "4.2.1") || !strings.Contains(it.Value, "--criu") {
			t.Fatalf("criu item = %+v", it)
		}
		if it := item(t, r, "criu check"); !it.OK || it.Value != "Looks good." || !strings.Contains(it.Detail, "Warn: something optional") {
			t.Fatalf("criu check item = %+v", it)
		}
		if it := item(t, r, "network lock"); !it.OK || it.Value != "nftables" {
			t.Fatalf("network lock item = %+v", it)
		}
		item(t, r, "cgroups")
		item(t, r, "privileges")
	})
	t.Run("too old and failing", func(t *testing.T) {
		r := Run(ctx, Options{CRIUPath: fakeCRIU(t, "3.17", 1, 1)})
		if r.OK() {
			t.Fatal("report OK with a failing CRIU")
		}
		if it := item(t, r, "criu"); it.OK || !strings.Contains(it.Fix, "make deps") {
			t.Fatalf("criu item = %+v", it)
		}
		if it := item(t, r, "criu check"); it.OK || it.Fix == "" {
			t.Fatalf("criu check item = %+v", it)
		}
		if it := item(t, r, "network lock"); it.OK || !strings.Contains(it.Fix, "libnftables") || it.Detail != "feature network_lock_nftables" {
			t.Fatalf("network lock item = %+v", it)
		}
	})
	t.Run("missing", func(t *testing.T) {
		r := Run(ctx, Options{CRIUPath: filepath.Join(t.TempDir(), "no-criu")})
		if it := item(t, r, "criu"); it.OK || it.Value != "not usable" || !strings.Contains(it.Fix, "--criu") {
			t.Fatalf("criu item = %+v", it)
		}
		for _, it := range r.Items {
			if it.Name == "criu check" || it.Name == "network lock" {
				t.Fatalf("%s checked without a CRIU", it.Name)
			}
		}
	})
}

func TestCgroupLayout(t *testing.T) {
	it := cgroupLayout()
	want := map[cgroups.Layout]string{cgroups.V1: "v1", cgroups.V2: "v2 (", cgroups.Hybrid: "hybrid ("}[cgroups.DetectLayout()]
	if !strings.HasPrefix(it.Value, want) {
		t.Fatalf("cgroups item = %+v, want it to start with %q", it, want)
	}
	_, v1err := cgroups.MountPoint("freezer")
	switch {
	case v1err == nil && (!it.OK || !strings.Contains(it.Value, "freezer: v1 controller at ")):
		t.Fatalf("host with a v1 freezer: %+v", it)
	case v1err != nil && cgroups.DetectLayout() == cgroups.V1 && (it.OK || it.Fix == ""):
		t.Fatalf("host without a freezer: %+v", it)
	}
}
