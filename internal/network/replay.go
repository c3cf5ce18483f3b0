package network

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/undo"
)

// ReplayOptions adapts a recorded configuration to the host it is replayed
// on. They apply to veth pairs leading out of the namespace, not to pairs
// with both ends inside.
type ReplayOptions struct {
	// PeerNetns is where the outer veth ends go (a path or HostNetns)
	// instead of the recorded namespace.
	PeerNetns string
	// PeerName names the outer veth end instead of the recorded name. It
	// needs exactly one veth leading out. An empty recorded name gets a
	// generated "veth" + hex name.
	PeerName string
	// Bridge is the bridge the outer veth ends are attached to instead of
	// the recorded one.
	Bridge string
	// CreateBridge creates the bridge, up, when it is missing.
	CreateBridge bool
	// LinksDown leaves the links inside the namespace down and adds no
	// routes (the kernel refuses routes through a down link): the caller
	// installs its firewall, then calls SetLinksUp. The outer veth ends are
	// brought up regardless; no traffic passes while the inner end is down.
	LinksDown bool
	// Created, when set, receives the links Replay created outside the
	// namespace (host ends of veth pairs, bridges), which outlive it.
	Created *[]OuterLink
}

// OuterLink is a link Replay created outside the replayed namespace.
type OuterLink struct {
	Name  string
	Kind  string // format.KindVeth or format.KindBridge
	Netns string // a path or format.HostNetns
}

// vethPlan is where one veth pair leading outside ends up.
type vethPlan struct {
	peerNetns, peerName, bridge string
	// bridgeAddrs and bridgeMTU are what a bridge Replay creates gets: the
	// recorded bridge's.
	bridgeAddrs []string
	bridgeMTU   int
}

// planVeths resolves ReplayOptions against the recorded veth pairs, keyed
// by the inner link name.
func planVeths(cfg *format.Config, opts ReplayOptions) (map[string]vethPlan, error) {
	plans := map[string]vethPlan{}
	var outside []string
	for _, l := range cfg.Links {
		if l.Kind != format.KindVeth || (l.Peer != nil && l.Peer.Netns == format.SelfNetns) {
			continue
		}
		outside = append(outside, l.Name)
		p := vethPlan{}
		if l.Peer != nil {
			p = vethPlan{peerNetns: l.Peer.Netns, peerName: l.Peer.Name, bridge: l.Peer.Master, bridgeAddrs: l.Peer.MasterAddrs, bridgeMTU: l.Peer.MasterMTU}
		}
		if opts.PeerNetns != "" {
			p.peerNetns = opts.PeerNetns
		}
		if opts.PeerName != "" {
			p.peerName = opts.PeerName
		}
		if opts.Bridge != "" {
			p.bridge = opts.Bridge
		}
		switch p.peerNetns {
		case "":
			return nil, errdefs.Hint(errdefs.Newf(errdefs.ErrUsage, "link %s: the namespace of the veth peer is unknown", l.Name), "pass ", "PeerNetns", "")
		case format.SelfNetns:
			return nil, errdefs.Hint(errdefs.Newf(errdefs.ErrUsage, "link %s: the veth peer cannot be in the namespace itself", l.Name), "change ", "PeerNetns", "")
		}
		if p.peerName == "" {
			p.peerName = "veth" + randomHex(4)
		}
		if len(p.peerName) > unix.IFNAMSIZ-1 {
			return nil, fmt.Errorf("link %s: peer name %q is longer than %d characters", l.Name, p.peerName, unix.IFNAMSIZ-1)
		}
		plans[l.Name] = p
	}
	if opts.PeerName != "" && len(outside) != 1 {
		return nil, errdefs.Option(errdefs.ErrUsage, "PeerName", fmt.Sprintf(" needs exactly one veth leading out of the namespace, the config has %d (%s)", len(outside), strings.Join(outside, ", ")))
	}
	return plans, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Replay recreates cfg inside the existing, normally empty, namespace at
// nsPath. The order matters: global sysctls (forwarding) before links so new
// links inherit them, per-link sysctls before addresses (disable_ipv6),
// addresses before links go up, routes last and in dependency order. Each
// link and bridge Replay creates, also outside the namespace, has its
// removal pushed onto rollback, which the caller runs when Replay or a later
// step fails; the error names the object that failed.
func Replay(nsPath string, cfg *format.Config, opts ReplayOptions, rollback *undo.Stack) error {
	// The configuration comes from an archive: nothing is created before
	// all of it has been vetted.
	if err := cfg.Validate(); err != nil {
		return errdefs.Newf(errdefs.ErrInvalidArchive, "%w", err)
	}
	plans, err := planVeths(cfg, opts)
	if err != nil {
		return fmt.Errorf("replay into %s: %w", nsPath, err)
	}
	r, err := newReplayer(nsPath, cfg)
	if err != nil {
		return err
	}
	defer r.close()
	r.opts, r.rollback = opts, rollback
	steps := []func() error{
		func() error { return writeSysctls(r.ns, cfg.Sysctls, func(rank int) bool { return rank < 3 }) },
		func() error { return r.links(plans) },
		func() error { return writeSysctls(r.ns, cfg.Sysctls, func(rank int) bool { return rank == 3 }) },
		r.addrs,
		r.rules,
		r.neighbors,
	}
	if !opts.LinksDown {
		steps = append(steps, func() error { return setLinksUp(r.h, cfg) })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// SetLinksUp brings up the links recorded up and adds the routes, for a
// namespace filled by Replay with LinksDown. Routes need their links up.
func SetLinksUp(nsPath string, cfg *format.Config) error {
	r, err := newReplayer(nsPath, cfg)
	if err != nil {
		return err
	}
	defer r.close()
	return setLinksUp(r.h, cfg)
}

type replayer struct {
	nsPath string
	ns     netns.NsHandle
	h      *netlink.Handle
	cfg    *format.Config
	opts   ReplayOptions
	// outer holds namespaces outside, by path.
	outer map[string]*nsCandidate
	// rollback receives the removal of what Replay creates.
	rollback *undo.Stack
}

func newReplayer(nsPath string, cfg *format.Config) (*replayer, error) {
	ns, err := openNetns(nsPath)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	return &replayer{nsPath: nsPath, ns: ns, h: h, cfg: cfg, outer: map[string]*nsCandidate{}}, nil
}

func (r *replayer) close() {
	for _, c := range r.outer {
		if c.h != nil {
			c.h.Close()
		}
		c.ns.Close()
	}
	r.h.Close()
	r.ns.Close()
}

// outerHandle opens a namespace outside the replayed one once.
func (r *replayer) outerHandle(path string) (*netlink.Handle, netns.NsHandle, error) {
	c, ok := r.outer[path]
	if !ok {
		ns, err := openNetns(path)
		if err != nil {
			return nil, netns.None(), err
		}
		c = &nsCandidate{label: path, ns: ns}
		r.outer[path] = c
	}
	h, err := c.handle()
	return h, c.ns, err
}

// deleteLater registers the removal of a created link, also as a journal
// record (nsPath is where the link is) for a guardian that outlives this
// process. A link already gone (the other end of a deleted veth pair) is
// fine.
func (r *replayer) deleteLater(h *netlink.Handle, nsPath, name, where string) error {
	if r.rollback == nil {
		return nil
	}
	rec := undo.Record{Kind: "delete-link", Netns: nsPath, Name: name}
	return r.rollback.PushRecord(fmt.Sprintf("create link %s in %s", name, where), rec, func() error {
		return deleteLink(h, name, where)
	})
}

// created reports a link made outside the namespace to ReplayOptions.Created.
func (r *replayer) created(kind, name, netns string) {
	if r.opts.Created != nil {
		*r.opts.Created = append(*r.opts.Created, OuterLink{Name: name, Kind: kind, Netns: netns})
	}
}

func deleteLink(h *netlink.Handle, name, where string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find %s in %s: %w", name, where, err)
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s in %s: %w", name, where, err)
	}
	return nil
}

// DeleteLink removes the link name from the namespace at nsPath (or
// format.HostNetns); a link or namespace already gone is fine.
func DeleteLink(nsPath, name string) error {
	if nsPath != format.HostNetns {
		if _, err := os.Stat(nsPath); errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	ns, err := openNetns(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	return deleteLink(h, name, nsPath)
}

// kindOrder creates links without dependencies first; vlan and macvlan
// need their parent.
var kindOrder = map[string]int{format.KindLoopback: 0, format.KindBridge: 1, format.KindDummy: 1, format.KindVeth: 2, format.KindVlan: 3, format.KindMacvlan: 3}

func replayable(l format.Link) bool {
	_, ok := kindOrder[l.Kind]
	return ok
}

func sortedLinks(cfg *format.Config) []format.Link {
	var links []format.Link
	for _, l := range cfg.Links {
		if replayable(l) {
			links = append(links, l)
		}
	}
	sort.SliceStable(links, func(i, j int) bool { return kindOrder[links[i].Kind] < kindOrder[links[j].Kind] })
	return links
}

func (r *replayer) links(plans map[string]vethPlan) error {
	created := map[string]bool{}
	for _, l := range sortedLinks(r.cfg) {
		if created[l.Name] {
			continue // the second end of an inner veth pair
		}
		if err := r.createLink(l, plans, created); err != nil {
			return fmt.Errorf("replay link %s: %w", l.Name, err)
		}
		created[l.Name] = true
	}
	for _, l := range sortedLinks(r.cfg) {
		if err := r.setLinkAttrs(l); err != nil {
			return fmt.Errorf("replay link %s: %w", l.Name, err)
		}
	}
	return nil
}

func (r *replayer) createLink(l format.Link, plans map[string]vethPlan, created map[string]bool) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = l.Name
	attrs.MTU = l.MTU
	if l.MAC != "" {
		mac, err := net.ParseMAC(l.MAC)
		if err != nil {
			return err
		}
		attrs.HardwareAddr = mac
	}
	switch l.Kind {
	case format.KindLoopback:
		return nil // every namespace has one
	case format.KindBridge:
		return r.addInner(&netlink.Bridge{LinkAttrs: attrs}, l.Name)
	case format.KindDummy:
		return r.addInner(&netlink.Dummy{LinkAttrs: attrs}, l.Name)
	case format.KindVeth:
		if l.Peer != nil && l.Peer.Netns == format.SelfNetns {
			// NewVeth, not a literal: a zero PeerTxQLen would be sent.
			v := netlink.NewVeth(attrs)
			v.PeerName, v.PeerMTU = l.Peer.Name, uint32(l.Peer.MTU)
			if l.Peer.MAC != "" {
				v.PeerHardwareAddr, _ = net.ParseMAC(l.Peer.MAC)
			}
			created[l.Peer.Name] = true
			return r.addInner(v, l.Name)
		}
		return r.createOuterVeth(l, attrs, plans[l.Name])
	case format.KindVlan, format.KindMacvlan:
		return r.createStacked(l, attrs)
	}
	return fmt.Errorf("kind %s cannot be created", l.Kind)
}

func (r *replayer) addInner(link netlink.Link, name string) error {
	if err := r.h.LinkAdd(link); err != nil {
		return fmt.Errorf("create %s: %w", link.Type(), err)
	}
	if err := r.deleteLater(r.h, r.nsPath, name, "namespace"); err != nil {
		return err
	}
	return nil
}

// createOuterVeth creates the pair from inside the namespace with the peer
// placed straight into its namespace, so neither name ever has to be free
// in the other namespace.
func (r *replayer) createOuterVeth(l format.Link, attrs netlink.LinkAttrs, p vethPlan) error {
	ph, pns, err := r.outerHandle(p.peerNetns)
	if err != nil {
		return err
	}
	var bridge netlink.Link
	if p.bridge != "" {
		if bridge, err = r.ensureBridge(ph, p); err != nil {
			return err
		}
	}
	v := netlink.NewVeth(attrs)
	v.PeerName, v.PeerNamespace = p.peerName, netlink.NsFd(pns)
	if l.Peer != nil && l.Peer.MTU > 0 {
		v.PeerMTU = uint32(l.Peer.MTU)
	}
	if err := r.h.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth with peer %s in %s: %w", p.peerName, nsLabel(p.peerNetns), err)
	}
	// Deleting the outer end removes the pair.
	if err := r.deleteLater(ph, p.peerNetns, p.peerName, nsLabel(p.peerNetns)); err != nil {
		return err
	}
	r.created(format.KindVeth, p.peerName, p.peerNetns)
	peer, err := ph.LinkByName(p.peerName)
	if err != nil {
		return fmt.Errorf("find peer %s in %s: %w", p.peerName, nsLabel(p.peerNetns), err)
	}
	if bridge != nil {
		if err := ph.LinkSetMaster(peer, bridge); err != nil {
			return fmt.Errorf("attach peer %s to bridge %s: %w", p.peerName, p.bridge, err)
		}
	}
	if err := ph.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set peer %s up: %w", p.peerName, err)
	}
	return nil
}

func (r *replayer) ensureBridge(ph *netlink.Handle, p vethPlan) (netlink.Link, error) {
	br, err := ph.LinkByName(p.bridge)
	if err == nil {
		if br.Type() != "bridge" {
			return nil, fmt.Errorf("%s in %s is a %s, not a bridge", p.bridge, nsLabel(p.peerNetns), br.Type())
		}
		return br, nil
	}
	var nf netlink.LinkNotFoundError
	if !errors.As(err, &nf) {
		return nil, fmt.Errorf("find bridge %s in %s: %w", p.bridge, nsLabel(p.peerNetns), err)
	}
	if !r.opts.CreateBridge {
		return nil, errdefs.Hint(fmt.Errorf("bridge %s in %s: %w", p.bridge, nsLabel(p.peerNetns), ErrBridgeMissing), "pass ", "CreateBridge", " to create it")
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = p.bridge
	if p.bridgeMTU > 0 {
		attrs.MTU = p.bridgeMTU
	}
	nb := &netlink.Bridge{LinkAttrs: attrs}
	if err := ph.LinkAdd(nb); err != nil {
		return nil, fmt.Errorf("create bridge %s in %s: %w", p.bridge, nsLabel(p.peerNetns), err)
	}
	if err := r.deleteLater(ph, p.peerNetns, p.bridge, nsLabel(p.peerNetns)); err != nil {
		return nil, err
	}
	r.created(format.KindBridge, p.bridge, p.peerNetns)
	for _, cidr := range p.bridgeAddrs {
		a, err := netlink.ParseAddr(cidr)
		if err != nil {
			return nil, errdefs.Newf(errdefs.ErrInvalidArchive, "address %q of bridge %s: %w", cidr, p.bridge, err)
		}
		if err := ph.AddrAdd(nb, a); err != nil {
			return nil, fmt.Errorf("add %s to bridge %s: %w", cidr, p.bridge, err)
		}
	}
	if err := ph.LinkSetUp(nb); err != nil {
		return nil, fmt.Errorf("set bridge %s up: %w", p.bridge, err)
	}
	return ph.LinkByName(p.bridge)
}

// createStacked creates a vlan or macvlan. A parent outside the namespace
// (the usual macvlan network) is addressed from its own namespace, and the
// new link is created straight into ours.
func (r *replayer) createStacked(l format.Link, attrs netlink.LinkAttrs) error {
	if l.Parent == nil || l.Parent.Name == "" {
		return fmt.Errorf("%s without a recorded parent", l.Kind)
	}
	h, where := r.h, "namespace"
	if l.Parent.Netns != format.SelfNetns && l.Parent.Netns != "" {
		ph, _, err := r.outerHandle(l.Parent.Netns)
		if err != nil {
			return err
		}
		h, where = ph, l.Parent.Netns
		attrs.Namespace = netlink.NsFd(r.ns)
	}
	parent, err := h.LinkByName(l.Parent.Name)
	if err != nil {
		return fmt.Errorf("parent %s in %s: %w", l.Parent.Name, where, err)
	}
	attrs.ParentIndex = parent.Attrs().Index
	var link netlink.Link
	if l.Kind == format.KindVlan {
		link = &netlink.Vlan{LinkAttrs: attrs, VlanId: l.VlanID}
	} else {
		mode, err := valueOf(macvlanModeNames, l.MacvlanMode)
		if err != nil {
			return fmt.Errorf("macvlan mode: %w", err)
		}
		link = &netlink.Macvlan{LinkAttrs: attrs, Mode: netlink.MacvlanMode(mode)}
	}
	if err := h.LinkAdd(link); err != nil {
		return fmt.Errorf("create %s on %s: %w", l.Kind, l.Parent.Name, err)
	}
	if err := r.deleteLater(r.h, r.nsPath, l.Name, "namespace"); err != nil {
		return err
	}
	return nil
}

// toggleFlags are the link flags Replay sets; up is left to setLinksUp and
// the others (broadcast, loopback, ...) come with the device type.
var toggleFlags = []struct {
	name    string
	bit     uint32
	on, off func(*netlink.Handle, netlink.Link) error
}{
	{"noarp", unix.IFF_NOARP, (*netlink.Handle).LinkSetARPOff, (*netlink.Handle).LinkSetARPOn},
	{"promisc", unix.IFF_PROMISC, (*netlink.Handle).SetPromiscOn, (*netlink.Handle).SetPromiscOff},
	{"allmulti", unix.IFF_ALLMULTI, (*netlink.Handle).LinkSetAllmulticastOn, (*netlink.Handle).LinkSetAllmulticastOff},
	{"multicast", unix.IFF_MULTICAST, (*netlink.Handle).LinkSetMulticastOn, (*netlink.Handle).LinkSetMulticastOff},
}

// setLinkAttrs applies what creation could not: lo's MTU, flags, masters.
func (r *replayer) setLinkAttrs(l format.Link) error {
	link, err := r.h.LinkByName(l.Name)
	if err != nil {
		return err
	}
	a := link.Attrs()
	if l.MTU > 0 && a.MTU != l.MTU {
		if err := r.h.LinkSetMTU(link, l.MTU); err != nil {
			return fmt.Errorf("set mtu %d: %w", l.MTU, err)
		}
	}
	for _, f := range toggleFlags {
		want := slices.Contains(l.Flags, f.name)
		if want == (a.RawFlags&f.bit != 0) {
			continue
		}
		set := f.off
		if want {
			set = f.on
		}
		if err := set(r.h, link); err != nil {
			return fmt.Errorf("set %s %v: %w", f.name, want, err)
		}
	}
	if l.Master != "" {
		master, err := r.h.LinkByName(l.Master)
		if err != nil {
			return fmt.Errorf("master %s: %w", l.Master, err)
		}
		if err := r.h.LinkSetMaster(link, master); err != nil {
			return fmt.Errorf("set master %s: %w", l.Master, err)
		}
	}
	return nil
}

func (r *replayer) linkIndex(name string) (int, error) {
	l, err := r.h.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

func (r *replayer) addrs() error {
	for _, a := range r.cfg.Addrs {
		if a.Auto {
			continue
		}
		if err := r.addAddr(a); err != nil {
			return fmt.Errorf("replay address %s dev %s: %w", a.CIDR, a.Link, err)
		}
	}
	return nil
}

func (r *replayer) addAddr(a format.Addr) error {
	na, err := netlinkAddr(a)
	if err != nil {
		return err
	}
	if na.LinkIndex, err = r.linkIndex(a.Link); err != nil {
		return err
	}
	return r.h.AddrAdd(nil, na)
}

func netlinkAddr(a format.Addr) (*netlink.Addr, error) {
	ipnet, err := parseIPNet(a.CIDR)
	if err != nil {
		return nil, err
	}
	v6 := ipnet.IP.To4() == nil
	na := &netlink.Addr{IPNet: ipnet, Label: a.Label}
	if na.Scope, err = valueOf(scopeNames, a.Scope); a.Scope != "" && err != nil {
		return nil, fmt.Errorf("scope: %w", err)
	}
	var keep []string
	for _, f := range a.Flags {
		if slices.Contains(replayableAddrFlags, f) {
			keep = append(keep, f)
		}
	}
	flags := namesToFlags(keep, addrFlagNames)
	// CRIU restores sockets bound to these addresses right after Replay,
	// and bind() fails on an address still tentative in DAD. An address
	// recorded with optimistic DAD is usable during DAD and keeps it.
	if v6 && !slices.Contains(keep, "optimistic") {
		flags |= unix.IFA_F_NODAD
	}
	na.Flags = int(flags)
	if a.Peer != "" {
		if na.Peer, err = parseIPNet(a.Peer); err != nil {
			return nil, fmt.Errorf("peer: %w", err)
		}
	}
	switch {
	case a.Broadcast != "":
		if na.Broadcast, err = parseIP(a.Broadcast); err != nil {
			return nil, fmt.Errorf("broadcast: %w", err)
		}
	case !v6:
		// The netlink library computes a broadcast address when none is
		// given; the recorded address had none.
		na.Broadcast = net.IPv4zero
	}
	valid, pref := a.ValidLft, a.PreferredLft
	if valid == 0 { // unset, as in a format.Config not made by Capture
		valid = format.Forever
		if pref == 0 {
			pref = format.Forever
		}
	}
	if valid != format.Forever || pref != format.Forever {
		na.ValidLft, na.PreferedLft = int(valid), int(pref)
	}
	return na, nil
}

func (r *replayer) rules() error {
	for _, rl := range r.cfg.Rules {
		nr, err := netlinkRule(rl)
		if err == nil {
			err = r.h.RuleAdd(nr)
		}
		if err != nil {
			return fmt.Errorf("replay rule %d (%s) lookup %d: %w", rl.Priority, rl.Family, rl.Table, err)
		}
	}
	return nil
}

func netlinkRule(rl format.Rule) (*netlink.Rule, error) {
	nr := netlink.NewRule()
	var err error
	if nr.Family, err = familyValue(rl.Family); err != nil {
		return nil, err
	}
	nr.Priority = rl.Priority
	nr.Table = rl.Table
	nr.IifName = rl.Iif
	nr.OifName = rl.Oif
	nr.Invert = rl.Invert
	nr.Mark = rl.Fwmark
	if rl.Fwmark != 0 || rl.Fwmask != 0 {
		mask := rl.Fwmask
		nr.Mask = &mask
	}
	if rl.Src != "" {
		if nr.Src, err = parseIPNet(rl.Src); err != nil {
			return nil, err
		}
	}
	if rl.Dst != "" {
		if nr.Dst, err = parseIPNet(rl.Dst); err != nil {
			return nil, err
		}
	}
	if rl.Protocol != "" {
		p, err := valueOf(protoNames, rl.Protocol)
		if err != nil {
			return nil, err
		}
		nr.Protocol = uint8(p)
	}
	return nr, nil
}

func (r *replayer) neighbors() error {
	for _, n := range r.cfg.Neighbors {
		if err := r.addNeighbor(n); err != nil {
			return fmt.Errorf("replay neighbor %s lladdr %s dev %s: %w", n.IP, n.MAC, n.Link, err)
		}
	}
	return nil
}

func (r *replayer) addNeighbor(n format.Neighbor) error {
	ip, err := parseIP(n.IP)
	if err != nil {
		return err
	}
	mac, err := net.ParseMAC(n.MAC)
	if err != nil {
		return err
	}
	idx, err := r.linkIndex(n.Link)
	if err != nil {
		return err
	}
	fam := netlink.FAMILY_V6
	if ip.To4() != nil {
		fam = netlink.FAMILY_V4
	}
	return r.h.NeighAdd(&netlink.Neigh{LinkIndex: idx, Family: fam, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: mac})
}

// setLinksUp brings links up (parents before vlans and macvlans on them),
// then adds the routes.
func setLinksUp(h *netlink.Handle, cfg *format.Config) error {
	for _, l := range sortedLinks(cfg) {
		if !slices.Contains(l.Flags, "up") {
			continue
		}
		link, err := h.LinkByName(l.Name)
		if err == nil {
			err = h.LinkSetUp(link)
		}
		if err != nil {
			return fmt.Errorf("set link %s up: %w", l.Name, err)
		}
	}
	return addRoutes(h, cfg.Routes)
}

// routeRank puts routes without dependencies first: reject routes, then
// routes onto a link, then gateway routes, the default routes last.
func routeRank(r format.Route) int {
	switch {
	case r.Type != "unicast" && r.Type != "":
		return 0
	case r.Gateway == "":
		return 1
	case r.Dst != "":
		return 2
	}
	return 3
}

// addRoutes adds in rank order and retries what failed while others still
// succeed: a gateway may only become reachable through a route added later.
func addRoutes(h *netlink.Handle, routes []format.Route) error {
	pending := slices.Clone(routes)
	sort.SliceStable(pending, func(i, j int) bool { return routeRank(pending[i]) < routeRank(pending[j]) })
	for len(pending) > 0 {
		var failed []format.Route
		var firstErr error
		for _, rt := range pending {
			err := addRoute(h, rt)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("replay route %s: %w", rt, err)
				}
				failed = append(failed, rt)
			}
		}
		if len(failed) == len(pending) {
			return firstErr
		}
		pending = failed
	}
	return nil
}

func addRoute(h *netlink.Handle, rt format.Route) error {
	nr, err := netlinkRoute(rt)
	if err != nil {
		return err
	}
	if rt.Link != "" {
		l, err := h.LinkByName(rt.Link)
		if err != nil {
			return err
		}
		nr.LinkIndex = l.Attrs().Index
	}
	return h.RouteAdd(nr)
}

func netlinkRoute(rt format.Route) (*netlink.Route, error) {
	fam, err := familyValue(rt.Family)
	if err != nil {
		return nil, err
	}
	nr := &netlink.Route{Family: fam, Table: rt.Table, Priority: rt.Priority, MTU: rt.MTU}
	if nr.Type, err = valueOf(routeTypeNames, cmp.Or(rt.Type, "unicast")); err != nil {
		return nil, err
	}
	scope, err := valueOf(scopeNames, cmp.Or(rt.Scope, "global"))
	if err != nil {
		return nil, err
	}
	nr.Scope = netlink.Scope(scope)
	proto, err := valueOf(protoNames, cmp.Or(rt.Protocol, "boot"))
	if err != nil {
		return nil, err
	}
	nr.Protocol = netlink.RouteProtocol(proto)
	dst := rt.Dst
	if dst == "" {
		// The netlink library wants some address to tell the family.
		dst = "0.0.0.0/0"
		if fam == unix.AF_INET6 {
			dst = "::/0"
		}
	}
	if nr.Dst, err = parseIPNet(dst); err != nil {
		return nil, err
	}
	if rt.Gateway != "" {
		if nr.Gw, err = parseIP(rt.Gateway); err != nil {
			return nil, err
		}
	}
	if rt.Src != "" {
		if nr.Src, err = parseIP(rt.Src); err != nil {
			return nil, err
		}
	}
	if rt.Onlink {
		nr.Flags |= int(netlink.FLAG_ONLINK)
	}
	return nr, nil
}
