package restore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/network"
)

// TestPreflightListsEveryBlocker: the pre-flight reports all problems of
// an archive at once, one per line, each with its fix, and changes nothing.
func TestPreflightListsEveryBlocker(t *testing.T) {
	tempStateDir(t)
	dir := t.TempDir()
	md := &format.Metadata{
		Version:    format.MetadataVersion,
		Container:  format.ContainerInfo{ID: "0123456789abcdef", Name: "web", Root: filepath.Join(dir, "gone-root")},
		Namespaces: map[string]format.Namespace{"net": {Path: "/run/netns/crtool-unit-gone"}},
		Mounts:     []format.ExternalMount{{Key: "/data", Kind: format.MountBind, Source: filepath.Join(dir, "gone-volume")}},
		Files:      []format.ExternalFile{{Key: "file[1:2]", Kind: format.FileReg, Path: filepath.Join(dir, "gone.log")}},
	}
	r := described(t, Options{Input: crtoolArchive(t, md), SkipCPUCheck: true})
	err := r.preflight(context.Background())
	var b Blockers
	if !errors.As(err, &b) {
		t.Fatalf("preflight = %v, want blockers", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"root filesystem " + md.Container.Root + " recorded in the archive is not there",
		"volume /data of the container comes from " + md.Mounts[0].Source,
		"leads to " + md.Files[0].Path,
		"network namespace is gone and the archive does not describe it: pass --netns PATH",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("blockers lack %q:\n%s", want, msg)
		}
	}
	if len(b) < 4 || strings.Count(msg, "\n") != len(b)-1 {
		t.Fatalf("%d blockers, not one per line:\n%s", len(b), msg)
	}
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatal("the blockers lost their class")
	}
	if r.plan != nil {
		t.Fatal("a blocked restore has a plan")
	}
}

// TestPreflightPlan: for a restorable archive the pre-flight says what the
// restore will create.
func TestPreflightPlan(t *testing.T) {
	tempStateDir(t)
	root := t.TempDir()
	md := &format.Metadata{
		Version:     format.MetadataVersion,
		Container:   format.ContainerInfo{ID: "0123456789abcdef", Name: "web", Root: root},
		Namespaces:  map[string]format.Namespace{"net": {Shared: true}},
		CRIUVersion: "99.0",
		Kernel:      "0.0-other",
	}
	var warnings []string
	r := described(t, Options{Input: crtoolArchive(t, md), SkipCPUCheck: true, Warnf: func(f string, a ...any) { warnings = append(warnings, f) }})
	r.bin = nil // no CRIU here: the version check is skipped, the kernel's is not
	if err := r.preflight(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.plan == nil || r.plan.Name != "web" {
		t.Fatalf("plan = %+v", r.plan)
	}
	if len(r.plan.Warnings) != 1 || !strings.Contains(r.plan.Warnings[0], "made on Linux 0.0-other") || len(warnings) != 1 {
		t.Fatalf("warnings %v / %v, want the other kernel once", r.plan.Warnings, warnings)
	}
}

func TestDescribeNetworkAndSplit(t *testing.T) {
	cfg := &format.Config{
		Links:  []format.Link{{Name: "lo", Kind: format.KindLoopback}, {Name: "eth0", Kind: format.KindVeth, Peer: &format.Peer{Name: "veth1", Master: "br0"}}},
		Addrs:  []format.Addr{{Link: "eth0", CIDR: "10.1.2.3/24"}, {Link: "lo", CIDR: "127.0.0.1/8"}},
		Routes: []format.Route{{}},
	}
	got := describeNetwork(cfg, network.ReplayOptions{CreateBridge: true})
	for _, want := range []string{"eth0 (veth, peer veth1 on bridge br0 (created if missing))", "addresses 10.1.2.3/24", "1 routes"} {
		if !strings.Contains(got, want) {
			t.Errorf("describeNetwork = %q, lacks %q", got, want)
		}
	}
	if strings.Contains(got, "127.0.0.1") {
		t.Errorf("loopback address listed: %q", got)
	}
	if splitJoined(nil) != nil {
		t.Fatal("nil split into something")
	}
	one := errors.New("one")
	var b Blockers
	if err := splitJoined(errors.Join(one, errors.New("two"))); !errors.As(err, &b) || len(b) != 2 || !errors.Is(err, one) {
		t.Fatalf("splitJoined = %v", err)
	}
	if err := splitJoined(one); err != one { //nolint:errorlint // the very error, unwrapped
		t.Fatalf("a single error changed: %v", err)
	}
}

// TestPreflightPodmanArchive runs the pre-flight, CPU check included, on a
// reference archive Podman wrote: it restores on any x86-64 CPU, so the
// only blocker is the missing bridge; with the namespace given, none.
func TestPreflightPodmanArchive(t *testing.T) {
	tempStateDir(t)
	r := described(t, Options{Input: referencePath(t, "bb2-httpd-portable-gzip.tar.gz"), Root: t.TempDir(), Name: "crtool-unit-pf"})
	err := r.preflight(context.Background())
	if err == nil || !strings.Contains(err.Error(), "pass --bridge NAME") {
		t.Fatalf("preflight without a bridge = %v", err)
	}
	r.opts.Netns = "/run/netns/crtool-unit-pf"
	if err := r.preflight(context.Background()); err != nil {
		t.Fatalf("preflight with --netns = %v", err)
	}
	if r.plan == nil || len(r.plan.Creates) == 0 || !strings.Contains(strings.Join(r.plan.Creates, "\n"), "joins /run/netns/crtool-unit-pf") {
		t.Fatalf("plan = %+v", r.plan)
	}
}
