package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/network"
)

// Blockers is every reason found, in one pass before anything is created,
// why the archive cannot be restored on this host: one error per line, each
// with its fix.
type Blockers []error

func (b Blockers) Error() string {
	lines := make([]string, len(b))
	for i, err := range b {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is find each blocker's class.
func (b Blockers) Unwrap() []error { return b }

// Plan is what a restore would create on this host, for --dry-run.
type Plan struct {
	Name string
	// Creates lists the host pieces, one line each.
	Creates []string
	// Warnings are what would be printed without stopping the restore.
	Warnings []string
}

// preflight checks the archive against this host and collects every
// blocker at once: a user fixes them all, not one per attempt. It also
// builds the plan that --dry-run prints. Nothing on the host changes.
func (r *restorer) preflight(ctx context.Context) error {
	var blockers Blockers
	add := func(err error) {
		if err == nil {
			return
		}
		var more Blockers
		if errors.As(err, &more) {
			blockers = append(blockers, more...)
			return
		}
		blockers = append(blockers, err)
	}
	plan := &Plan{Name: r.name}
	warn := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		plan.Warnings = append(plan.Warnings, msg)
		if !r.opts.DryRun {
			r.opts.warnf("%s", msg)
		}
	}

	add(checkNameFree(r.name))
	if !r.opts.SkipCPUCheck {
		add(r.checkCPU(ctx))
	}
	r.checkVersions(warn)

	add(r.rootProblem(ctx))
	if dir, what := r.stateDirPlan(); dir != "" {
		if _, err := os.Stat(dir); err == nil {
			add(errdefs.Hint(errdefs.Newf(errdefs.ErrConflict, "%s exists: a container named %s was restored here before", dir, r.name), "pass ", "Name", " or remove it"))
		} else {
			plan.Creates = append(plan.Creates, fmt.Sprintf("state directory %s with %s", dir, what))
		}
	}

	cg := r.cgroupSet()
	add(checkCgroupsFree(cg))
	if missing, err := cg.Missing(); err != nil {
		add(err)
	} else if len(missing) > 0 {
		plan.Creates = append(plan.Creates, "cgroups "+strings.Join(missing, " "))
	}

	// Volumes; the private mounts, and the files replacing a foreign
	// archive's, are the restore's to write.
	for _, err := range r.missingVolumes() {
		add(err)
	}
	for _, ef := range r.md.Files {
		if ef.Kind == format.FileReg {
			if _, err := os.Stat(ef.Path); err != nil {
				add(errdefs.Newf(errdefs.ErrConflict, "container descriptor %s leads to %s, which does not exist on this host: create it", ef.Key, ef.Path))
			}
		}
	}

	r.preflightNetwork(plan, add)
	add(r.checkPorts(ctx))
	if len(r.publish) > 0 {
		var ports []string
		for _, p := range r.publish {
			ports = append(ports, p.String())
		}
		plan.Creates = append(plan.Creates, fmt.Sprintf("nftables table inet %s publishing %s", network.PortsTable(r.name), strings.Join(ports, ", ")))
	}

	if len(blockers) > 0 {
		return blockers
	}
	r.plan = plan
	return nil
}

// checkVersions compares the kernel and CRIU that wrote the images with
// this host's: CRIU reads images of older versions, not always of newer
// ones, so an older CRIU here gets a warning, as does another kernel
// (CRIU checks what it needs itself, and says so in its log).
func (r *restorer) checkVersions(warn func(string, ...any)) {
	if v := r.md.CRIUVersion; v != "" && r.bin != nil {
		if src, err := criu.ParseVersion("Version: " + v); err == nil && !r.bin.Version.AtLeast(src) {
			warn("the images were written by CRIU %s, this host has CRIU %s: if the restore fails, install CRIU %s or newer (or pass --criu PATH)", src, r.bin.Version, src)
		}
	}
	if k := r.md.Kernel; k != "" {
		if here := criu.KernelRelease(); here != "" && here != k {
			warn("the checkpoint was made on Linux %s, this host runs %s", k, here)
		}
	}
}

// preflightNetwork checks what joining or rebuilding the network needs.
func (r *restorer) preflightNetwork(plan *Plan, add func(error)) {
	md, opts := r.md, r.opts
	ns := md.Namespaces["net"]
	switch {
	case ns.Shared:
		if opts.Netns != "" {
			add(errdefs.Hint(errdefs.Newf(errdefs.ErrUsage, "the container shared its host's network namespace, so %s does not apply", opts.Netns), "drop ", "Netns", ""))
		}
	case opts.Netns != "":
		plan.Creates = append(plan.Creates, "nothing for the network: joins "+opts.Netns)
	case ns.Path != "" && exists(ns.Path):
		add(hasAddresses(ns.Path, md.Network))
		plan.Creates = append(plan.Creates, "nothing for the network: joins "+ns.Path)
	case md.Network == nil:
		add(errdefs.Newf(errdefs.ErrConflict, "the container's network namespace is gone and the archive does not describe it: pass --netns PATH"))
	default:
		name := netnsName(md, opts)
		if exists(filepath.Join(network.NamedDir, name)) {
			add(errdefs.Newf(errdefs.ErrConflict, "network namespace %s already exists: pass --netns %s to join it", name, filepath.Join(network.NamedDir, name)))
		}
		ropts, err := replayOptions(md, opts)
		if err != nil {
			add(err)
			return
		}
		add(splitJoined(network.Check(md.Network, ropts)))
		plan.Creates = append(plan.Creates, "network namespace "+filepath.Join(network.NamedDir, name)+" with "+describeNetwork(md.Network, ropts))
	}
}

// splitJoined turns a joined error into one blocker per cause.
func splitJoined(err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // splits this error only
		return Blockers(j.Unwrap())
	}
	return err
}

// describeNetwork summarizes the links, addresses and routes a replay makes.
func describeNetwork(cfg *format.Config, o network.ReplayOptions) string {
	var links []string
	for _, l := range cfg.Links {
		s := l.Name + " (" + l.Kind
		if l.Peer != nil {
			bridge := o.Bridge
			if bridge == "" {
				bridge = l.Peer.Master
			}
			s += ", peer " + l.Peer.Name
			if bridge != "" {
				s += " on bridge " + bridge
				if o.CreateBridge {
					s += " (created if missing)"
				}
			}
		}
		links = append(links, s+")")
	}
	var addrs []string
	for _, a := range cfg.Addrs {
		if !a.Auto && a.Link != "lo" {
			addrs = append(addrs, a.CIDR)
		}
	}
	sort.Strings(addrs)
	return fmt.Sprintf("links %s; addresses %s; %d routes", strings.Join(links, ", "), strings.Join(addrs, " "), len(cfg.Routes))
}
