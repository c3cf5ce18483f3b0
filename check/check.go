// Package check reports whether this host can checkpoint and restore
// containers with crtool, and how to fix what is missing.
package check

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/guardian"
)

// Item is one line of the report.
type Item struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	OK     bool   `json:"ok"`
	Fix    string `json:"fix,omitempty"`    // what to do when not OK
	Detail string `json:"detail,omitempty"` // more output, e.g. CRIU's own check
}

// Report is the whole check.
type Report struct {
	Items []Item `json:"items"`
}

// OK reports whether a dump can work.
func (r *Report) OK() bool {
	for _, it := range r.Items {
		if !it.OK {
			return false
		}
	}
	return true
}

func (r *Report) add(it Item) { r.Items = append(r.Items, it) }

// Options for Run.
type Options struct {
	CRIUPath string
}

// Run inspects the host.
func Run(ctx context.Context, o Options) *Report {
	r := &Report{}
	r.add(privileges())
	bin, err := criu.Open(ctx, o.CRIUPath)
	switch {
	case bin == nil:
		r.add(Item{Name: "criu", Value: "not usable", Fix: err.Error()})
	default:
		it := Item{Name: "criu", Value: fmt.Sprintf("%s (%s), version %s", bin.Path, bin.Source, bin.Version), OK: err == nil}
		if err != nil {
			it.Fix = err.Error()
		}
		r.add(it)
		out, cerr := bin.Check(ctx)
		ci := Item{Name: "criu check", OK: cerr == nil, Detail: strings.TrimSpace(out)}
		ci.Value = lastLine(out)
		if cerr != nil {
			ci.Fix = "CRIU's own check failed (see its output above): the kernel lacks a feature CRIU needs"
		}
		r.add(ci)
		r.add(networkLock(ctx, bin))
	}
	r.add(cgroupLayout())
	r.add(leftovers())
	return r
}

// leftovers reports journals of runs that died with their guardian (or
// with the host): changes nobody has undone yet.
func leftovers() Item {
	stale, err := guardian.Leftovers()
	if err != nil {
		return Item{Name: "leftovers", Value: "unknown", Fix: fmt.Sprintf("read crtool's journals: %v", err)}
	}
	if len(stale) == 0 {
		return Item{Name: "leftovers", Value: "none", OK: true}
	}
	var lines []string
	for _, s := range stale {
		lines = append(lines, s.Describe())
	}
	return Item{
		Name:   "leftovers",
		Value:  fmt.Sprintf("%d interrupted run(s) left changes on this host", len(stale)),
		Detail: strings.Join(lines, "\n"),
		Fix:    "run crtool recover to undo them (crtool check -v lists them)",
	}
}

// privileges checks euid 0 and the capabilities a dump needs. Lacking
// CAP_SYS_RESOURCE only limits what can be dumped, so it is a note.
func privileges() Item {
	return privilegesOf(os.Geteuid(), capEff())
}

// privilegesOf judges an effective uid and capability mask.
func privilegesOf(euid int, eff uint64) Item {
	if euid != 0 {
		return Item{Name: "privileges", Value: fmt.Sprintf("euid %d", euid), Fix: "run crtool as root (sudo)"}
	}
	need := map[int]string{21: "CAP_SYS_ADMIN", 19: "CAP_SYS_PTRACE", 12: "CAP_NET_ADMIN", 5: "CAP_KILL"}
	var missing []string
	for bit, name := range need {
		if eff&(1<<bit) == 0 {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return Item{Name: "privileges", Value: "root, missing " + strings.Join(missing, ", "), Fix: "run crtool with full root capabilities (not in a restricted container)"}
	}
	v := "root with the capabilities CRIU needs"
	if eff&(1<<24) == 0 {
		v += " (no CAP_SYS_RESOURCE: only processes running as root can be dumped, open-files limit stays as is)"
	}
	return Item{Name: "privileges", Value: v, OK: true}
}

func capEff() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	return capEffOf(f)
}

// capEffOf reads the CapEff line of a /proc/PID/status.
func capEffOf(status io.Reader) uint64 {
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	return 0
}

// networkLock checks the nftables network lock crtool asks CRIU for (the
// iptables one needs iptables-restore, which minimal hosts lack).
func networkLock(ctx context.Context, bin *criu.Binary) Item {
	out, err := exec.CommandContext(ctx, bin.Path, "check", "--feature", "network_lock_nftables").CombinedOutput()
	if err != nil {
		return Item{Name: "network lock", Value: "nftables not supported", Fix: "use a CRIU built with libnftables (make deps installs one)", Detail: strings.TrimSpace(string(out))}
	}
	return Item{Name: "network lock", Value: "nftables", OK: true}
}

func cgroupLayout() Item {
	layout := cgroups.DetectLayout()
	it := Item{Name: "cgroups", OK: true}
	switch layout {
	case cgroups.V2:
		it.Value = "v2 (unified at /sys/fs/cgroup)"
	case cgroups.Hybrid:
		it.Value = "hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)"
	default:
		it.Value = "v1"
	}
	if mnt, err := cgroups.MountPoint("freezer"); err == nil {
		it.Value += "; freezer: v1 controller at " + mnt
	} else if layout == cgroups.V2 || layout == cgroups.Hybrid {
		mnt, _ := cgroups.MountPoint(cgroups.Unified)
		it.Value += "; freezer: cgroup v2 cgroup.freeze under " + mnt
	} else {
		it.OK = false
		it.Value += "; no freezer"
		it.Fix = "mount the v1 freezer controller or cgroup v2"
	}
	return it
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
