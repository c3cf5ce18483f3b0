package restore

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/guardian"
	"github.com/crtool/crtool/internal/network"
	"github.com/crtool/crtool/internal/undo"
)

// netPlan is the network namespace a restored container goes into, and what
// must happen around CRIU for its connections to survive.
type netPlan struct {
	path    string         // namespace handed to CRIU
	file    *os.File       // held open while CRIU runs
	created string         // name of a namespace this restore created
	lock    *network.Lock  // lock this restore installed
	stale   []network.Lock // locks left by the dump in a namespace we join
	// outer are the links this restore created outside the namespace.
	outer []network.OuterLink
	// rollback is the restore's: it removes what the plan created, newest
	// first (the lock, the links and bridges Replay made, outside the
	// namespace too, the namespace), and journals it for the guardian.
	rollback *undo.Stack
}

// planNetwork prepares the container's network namespace. With --netns, or
// when the recorded namespace still exists, the container joins it;
// otherwise a new namespace is built from the recorded configuration, its
// links kept down until (for established connections) a drop-all lock is in
// place, so no peer ever meets a reset.
func planNetwork(md *format.Metadata, opts Options, rollback *undo.Stack) (p *netPlan, err error) {
	ns := md.Namespaces["net"]
	if ns.Shared {
		if opts.Netns != "" {
			return nil, errdefs.Hint(errdefs.Newf(errdefs.ErrUsage, "the container shared its host's network namespace, so %s does not apply", opts.Netns), "drop ", "Netns", "")
		}
		return nil, nil
	}
	p = &netPlan{rollback: rollback}
	defer func() {
		if err != nil {
			// What the plan created is on the restore's rollback.
			p.close()
		}
	}()
	switch {
	case opts.Netns != "":
		p.path = opts.Netns
	case ns.Path != "" && exists(ns.Path):
		p.path = ns.Path
		if err := hasAddresses(p.path, md.Network); err != nil {
			return nil, err
		}
	case md.Network == nil:
		return nil, errdefs.Newf(errdefs.ErrConflict, "the container's network namespace is gone and the archive does not describe it: pass --netns PATH")
	default:
		if err := p.rebuild(md, opts); err != nil {
			return nil, err
		}
	}
	if p.created == "" && md.NetworkLock != "" {
		// The dump left its lock in the namespace; it goes once CRIU has
		// restored the connections it protected.
		// The dump also took the links down; they come back up now, with
		// their routes (CRIU needs a route to reconnect a socket), while
		// the lock still holds every packet back.
		if tables, _ := network.Tables(p.path, network.LockPrefix); slices.Contains(tables, md.NetworkLock) {
			p.stale = append(p.stale, network.Lock{NsPath: p.path, Table: md.NetworkLock})
			if md.Network != nil {
				if err := network.Resume(p.path, md.Network); err != nil {
					return nil, err
				}
			}
		}
	}
	f, err := os.Open(p.path)
	if err != nil {
		return nil, errdefs.Newf(errdefs.ErrConflict, "network namespace %s: %v: pass --netns PATH", p.path, err)
	}
	p.file = f
	return p, nil
}

// rebuild creates a named namespace and replays the recorded configuration.
func (p *netPlan) rebuild(md *format.Metadata, opts Options) error {
	name := netnsName(md, opts)
	if exists(filepath.Join(network.NamedDir, name)) {
		return errdefs.Newf(errdefs.ErrConflict, "network namespace %s already exists: pass --netns %s to join it", name, filepath.Join(network.NamedDir, name))
	}
	ropts, err := replayOptions(md, opts)
	if err != nil {
		return err
	}
	ropts.Created = &p.outer
	// Conflicts (the address in use elsewhere, the bridge missing) are
	// found before anything is created.
	if err := network.Check(md.Network, ropts); err != nil {
		return err
	}
	bridges := recreatableBridges(md, opts)
	path, err := network.CreateNamed(name)
	if err != nil {
		return err
	}
	p.path, p.created = path, name
	if err := p.rollback.PushRecord("delete network namespace "+name, guardian.DeleteNetns(name), func() error { return network.DeleteNamed(name) }); err != nil {
		return err
	}
	if err := network.Replay(path, md.Network, ropts, p.rollback); err != nil {
		return err
	}
	for _, b := range bridges {
		opts.warnf("bridge %s was missing: created it with %s, as the container's network had it", b.Master, strings.Join(b.MasterAddrs, ", "))
	}
	if ropts.PeerName != "" {
		opts.logf("the host end of the container's veth was taken: named it %s", ropts.PeerName)
	}
	if opts.TCPEstablished {
		if p.lock, err = network.LockNamespace(path, "restore-"+format.ShortID(md.Container.ID)); err != nil {
			return err
		}
		lock := p.lock
		if err := p.rollback.PushRecord("unlock network namespace "+name, guardian.DeleteTable(path, lock.Table), lock.Unlock); err != nil {
			return err
		}
		if err := network.SetLinksUp(path, md.Network); err != nil {
			return err
		}
	}
	return nil
}

// replayOptions are the options of replaying the recorded network into a
// new namespace.
func replayOptions(md *format.Metadata, opts Options) (network.ReplayOptions, error) {
	ropts := network.ReplayOptions{
		Bridge:       opts.Bridge,
		CreateBridge: opts.CreateBridge || len(recreatableBridges(md, opts)) > 0,
		PeerNetns:    opts.PeerNetns,
		PeerName:     freshPeerName(md, opts),
		LinksDown:    opts.TCPEstablished,
	}
	for _, l := range md.Network.Links {
		if l.Peer == nil || l.Kind != format.KindVeth {
			continue
		}
		if l.Peer.Netns == "" && ropts.PeerNetns == "" {
			// Archives from Podman say nothing of the host side.
			ropts.PeerNetns = format.HostNetns
		}
		if l.Peer.Master == "" && ropts.Bridge == "" {
			return ropts, errdefs.Newf(errdefs.ErrConflict, "the archive does not name the bridge for the container's %s: pass --bridge NAME (with --create-bridge to create it)", l.Name)
		}
	}
	return ropts, nil
}

// netnsName is the name of a rebuilt namespace: --name, else the recorded
// namespace's name, else the container's.
func netnsName(md *format.Metadata, opts Options) string {
	switch {
	case opts.Name != "":
		return opts.Name
	case md.Namespaces["net"].Path != "":
		return filepath.Base(md.Namespaces["net"].Path)
	}
	return md.Container.Name
}

// hasAddresses checks that an existing namespace carries the recorded
// addresses: a namespace of the same name may have been recreated empty
// (and an inode number may have been reused), which would strand the
// container's sockets.
func hasAddresses(path string, want *format.Config) error {
	if want == nil {
		return nil
	}
	have, err := network.AddressesOf(path)
	if err != nil {
		return err
	}
	if missing := missingAddresses(have, want); len(missing) > 0 {
		return errdefs.Newf(errdefs.ErrConflict, "network namespace %s lacks the container's addresses (%s): delete it so crtool rebuilds it, or pass --netns PATH", path, strings.Join(missing, ", "))
	}
	return nil
}

// missingAddresses are the recorded addresses (CIDR) that have lacks; the
// kernel's own (link-local IPv6 and the like) come back by themselves.
func missingAddresses(have []string, want *format.Config) []string {
	got := map[string]bool{}
	for _, a := range have {
		got[a] = true
	}
	var missing []string
	for _, a := range want.Addrs {
		if !a.Auto && !got[a.CIDR] {
			missing = append(missing, a.CIDR)
		}
	}
	return missing
}

// afterRestore lifts the locks once CRIU has restored the sockets.
func (p *netPlan) afterRestore() error {
	if p == nil {
		return nil
	}
	var errs []error
	if err := p.lock.Unlock(); err != nil {
		errs = append(errs, err)
	}
	p.lock = nil
	for _, l := range p.stale {
		if err := l.Unlock(); err != nil {
			errs = append(errs, err)
		}
	}
	p.stale = nil
	return errors.Join(errs...)
}

func (p *netPlan) close() {
	if p != nil && p.file != nil {
		p.file.Close()
		p.file = nil
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
