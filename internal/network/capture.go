package network

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
)

// Capture records the configuration of the network namespace at nsPath
// (/proc/PID/ns/net or /run/netns/NAME). It only reads; the one side effect
// is the kernel's, which assigns namespace ids to veth peers when their
// links are listed, as `ip link` does.
func Capture(nsPath string) (*format.Config, error) {
	ns, err := openNetns(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("capture %s: netlink: %w", nsPath, err)
	}
	defer h.Close()

	c := &capturer{
		ns:      ns,
		h:       h,
		links:   map[int]netlink.Link{},
		names:   map[int]string{},
		skipped: map[int]string{},
		finder:  &nsFinder{h: h, self: ns},
		cfg:     &format.Config{Links: []format.Link{}, Addrs: []format.Addr{}, Routes: []format.Route{}},
	}
	defer c.finder.close()
	steps := []struct {
		what string
		fn   func() error
	}{
		{"links", c.listLinks},
		{"addresses", c.addrs},
		{"routes", c.routes},
		{"rules", c.rules},
		{"neighbors", c.neighbors},
		{"sysctls", c.sysctls},
		{"sockets", c.sockets},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return nil, fmt.Errorf("capture %s of %s: %w", s.what, nsPath, err)
		}
	}
	return c.cfg, nil
}

type capturer struct {
	ns     netns.NsHandle
	h      *netlink.Handle
	cfg    *format.Config
	finder *nsFinder
	// links and names map the ifindex of every link in the namespace.
	links map[int]netlink.Link
	names map[int]string
	// skipped holds links Replay cannot recreate, by ifindex; whatever is
	// configured on them is not recorded either.
	skipped map[int]string
}

func (c *capturer) unsupported(format string, args ...any) {
	c.cfg.Unsupported = append(c.cfg.Unsupported, fmt.Sprintf(format, args...))
}

// retryDump repeats a netlink dump the kernel interrupted because the
// object list changed under it; the result would be inconsistent.
func retryDump[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// classify maps a netlink link to the kinds Replay knows; driver names the
// kernel driver of KindOther links.
func classify(l netlink.Link) (kind, driver string) {
	switch l.(type) {
	case *netlink.Veth:
		return format.KindVeth, ""
	case *netlink.Bridge:
		return format.KindBridge, ""
	case *netlink.Dummy:
		return format.KindDummy, ""
	case *netlink.Vlan:
		return format.KindVlan, ""
	case *netlink.Macvlan:
		return format.KindMacvlan, ""
	case *netlink.Device:
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			return format.KindLoopback, ""
		}
		return format.KindDevice, ""
	}
	return format.KindOther, l.Type()
}

func (c *capturer) listLinks() error {
	links, err := retryDump(c.h.LinkList)
	if err != nil {
		return err
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Index < links[j].Attrs().Index })
	for _, l := range links {
		c.links[l.Attrs().Index] = l
		c.names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		kind, driver := classify(l)
		link := format.Link{
			Name:   a.Name,
			Kind:   kind,
			Driver: driver,
			MTU:    a.MTU,
			Flags:  flagsToNames(a.RawFlags, linkFlagNames),
			Index:  a.Index,
			Master: c.names[a.MasterIndex],
		}
		if len(a.HardwareAddr) > 0 && kind != format.KindLoopback {
			link.MAC = a.HardwareAddr.String()
		}
		switch kind {
		case format.KindVeth:
			link.Peer, err = c.vethPeer(a)
		case format.KindVlan:
			link.Parent, err = c.parent(a)
			link.VlanID = l.(*netlink.Vlan).VlanId
			if p := l.(*netlink.Vlan).VlanProtocol; p != netlink.VLAN_PROTOCOL_8021Q && p != netlink.VLAN_PROTOCOL_UNKNOWN {
				c.unsupported("link %s: vlan protocol %s is replayed as 802.1Q", a.Name, p)
			}
		case format.KindMacvlan:
			link.Parent, err = c.parent(a)
			link.MacvlanMode = nameOf(macvlanModeNames, int(l.(*netlink.Macvlan).Mode))
			if l.(*netlink.Macvlan).Mode == netlink.MACVLAN_MODE_SOURCE {
				c.unsupported("link %s: the source MAC list of a source-mode macvlan is not recorded", a.Name)
			}
		case format.KindDevice, format.KindOther:
			what := kind
			if driver != "" {
				what = driver
			}
			c.skipped[a.Index] = a.Name
			c.unsupported("link %s: kind %s cannot be recreated; its addresses, routes and neighbors are not recorded", a.Name, what)
		}
		if err != nil {
			return fmt.Errorf("link %s: %w", a.Name, err)
		}
		c.cfg.Links = append(c.cfg.Links, link)
	}
	return nil
}

// vethPeer finds the other end: IFLA_LINK is its ifindex, IFLA_LINK_NETNSID
// the id this namespace gave the peer's namespace (absent if it is this one).
func (c *capturer) vethPeer(a *netlink.LinkAttrs) (*format.Peer, error) {
	if a.NetNsID < 0 {
		pl, ok := c.links[a.ParentIndex]
		if !ok {
			return nil, fmt.Errorf("peer ifindex %d not found", a.ParentIndex)
		}
		return peerOf(pl, format.SelfNetns, c.names), nil
	}
	cand, err := c.finder.find(a.NetNsID)
	if err != nil {
		return nil, err
	}
	if cand == nil {
		c.unsupported("link %s: the namespace of its veth peer (nsid %d) is neither crtool's nor one in %s: restore it with --peer-netns", a.Name, a.NetNsID, NamedDir)
		return &format.Peer{}, nil
	}
	ph, err := cand.handle()
	if err != nil {
		return nil, err
	}
	pl, err := ph.LinkByIndex(a.ParentIndex)
	if err != nil {
		return nil, fmt.Errorf("peer ifindex %d in %s: %w", a.ParentIndex, cand.label, err)
	}
	masters := map[int]string{}
	var master netlink.Link
	if mi := pl.Attrs().MasterIndex; mi != 0 {
		if m, err := ph.LinkByIndex(mi); err == nil {
			masters[mi], master = m.Attrs().Name, m
		}
	}
	peer := peerOf(pl, cand.label, masters)
	if master != nil && master.Type() == "bridge" {
		peer.MasterMTU = master.Attrs().MTU
		peer.MasterAddrs = bridgeAddrs(ph, master)
	}
	return peer, nil
}

// bridgeAddrs are the addresses a bridge's owner gave it (the containers'
// gateway); the kernel's link-local ones are left out.
func bridgeAddrs(ph *netlink.Handle, br netlink.Link) []string {
	addrs, err := ph.AddrList(br, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if a.Scope == unix.RT_SCOPE_UNIVERSE {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}

func peerOf(pl netlink.Link, label string, masters map[int]string) *format.Peer {
	pa := pl.Attrs()
	return &format.Peer{
		Name:   pa.Name,
		Netns:  label,
		MAC:    pa.HardwareAddr.String(),
		MTU:    pa.MTU,
		Master: masters[pa.MasterIndex],
	}
}

func (c *capturer) parent(a *netlink.LinkAttrs) (*format.Parent, error) {
	if a.NetNsID < 0 {
		return &format.Parent{Name: c.names[a.ParentIndex], Netns: format.SelfNetns}, nil
	}
	cand, err := c.finder.find(a.NetNsID)
	if err != nil {
		return nil, err
	}
	if cand == nil {
		c.unsupported("link %s: the namespace of its parent device (nsid %d) was not found", a.Name, a.NetNsID)
		return &format.Parent{}, nil
	}
	ph, err := cand.handle()
	if err != nil {
		return nil, err
	}
	pl, err := ph.LinkByIndex(a.ParentIndex)
	if err != nil {
		return nil, fmt.Errorf("parent ifindex %d in %s: %w", a.ParentIndex, cand.label, err)
	}
	return &format.Parent{Name: pl.Attrs().Name, Netns: cand.label}, nil
}

func (c *capturer) addrs() error {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return c.h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return err
	}
	macs := map[string]net.HardwareAddr{}
	loopback := map[string]bool{}
	for _, l := range c.cfg.Links {
		macs[l.Name], _ = net.ParseMAC(l.MAC)
		loopback[l.Name] = l.Kind == format.KindLoopback
	}
	for _, a := range addrs {
		name, ok := c.names[a.LinkIndex]
		if !ok || c.skipped[a.LinkIndex] != "" {
			continue
		}
		v6 := a.IP.To4() == nil
		addr := format.Addr{
			Link:         name,
			CIDR:         prefixString(a.IPNet),
			Scope:        nameOf(scopeNames, a.Scope),
			Flags:        addrFlagsToNames(uint32(a.Flags), v6),
			ValidLft:     uint32(a.ValidLft),
			PreferredLft: uint32(a.PreferedLft),
		}
		if a.Peer != nil {
			addr.Peer = prefixString(a.Peer)
		}
		if a.Broadcast != nil {
			addr.Broadcast = ipString(a.Broadcast)
		}
		if a.Label != "" && a.Label != name {
			addr.Label = a.Label
		}
		addr.Auto = isAutoAddr(loopback[name], a.IPNet, macs[name])
		c.cfg.Addrs = append(c.cfg.Addrs, addr)
	}
	return nil
}

// isAutoAddr reports addresses the kernel makes by itself: 127.0.0.1/8 and
// ::1/128 when lo comes up, and the EUI-64 link-local address derived from
// the MAC when any other link does.
func isAutoAddr(loopback bool, n *net.IPNet, mac net.HardwareAddr) bool {
	ones, _ := n.Mask.Size()
	if loopback {
		return (n.IP.Equal(net.IPv4(127, 0, 0, 1)) && ones == 8) || (n.IP.Equal(net.IPv6loopback) && ones == 128)
	}
	ip := n.IP.To16()
	if n.IP.To4() != nil || !ip.IsLinkLocalUnicast() || ones != 64 || len(mac) != 6 {
		return false
	}
	eui := []byte{mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}
	return bytes.Equal(ip[8:], eui)
}

// skippedRouteProtos are origins whose routes come back without Replay:
// kernel routes from addresses and links, router advertisements, redirects.
var skippedRouteProtos = map[netlink.RouteProtocol]bool{
	unix.RTPROT_KERNEL:   true,
	unix.RTPROT_RA:       true,
	unix.RTPROT_REDIRECT: true,
}

func (c *capturer) routes() error {
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return c.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return err
	}
	for _, r := range routes {
		// The local table only holds what the kernel derives from
		// addresses (local, broadcast, IPv6 multicast ff00::/8).
		if r.Table == unix.RT_TABLE_LOCAL || skippedRouteProtos[r.Protocol] {
			continue
		}
		if r.Family != unix.AF_INET && r.Family != unix.AF_INET6 {
			continue
		}
		rt := format.Route{
			Family:   familyName(r.Family),
			Table:    r.Table,
			Type:     nameOf(routeTypeNames, r.Type),
			Gateway:  ipString(r.Gw),
			Src:      ipString(r.Src),
			Scope:    nameOf(scopeNames, int(r.Scope)),
			Protocol: nameOf(protoNames, int(r.Protocol)),
			Priority: r.Priority,
			Onlink:   r.Flags&unix.RTNH_F_ONLINK != 0,
			MTU:      r.MTU,
		}
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones > 0 {
				rt.Dst = prefixString(r.Dst)
			}
		}
		// Reject routes show "dev lo" in IPv6; the device means nothing there.
		if r.Type == unix.RTN_UNICAST {
			rt.Link = c.names[r.LinkIndex]
		}
		switch {
		case routeTypeNames[r.Type] == "":
			c.unsupported("route %s: type %d is not recorded", rt, r.Type)
		case len(r.MultiPath) > 0 || r.Encap != nil || r.Via != nil || r.NewDst != nil || r.MPLSDst != nil:
			c.unsupported("route %s: multipath, encapsulation and MPLS routes are not recorded", rt)
		case c.skipped[r.LinkIndex] != "":
			c.unsupported("route %s: not recorded, its link is not supported", rt)
		default:
			c.cfg.Routes = append(c.cfg.Routes, rt)
		}
	}
	return nil
}

// defaultRules are the rules every new namespace starts with, by family and
// priority, with their table.
var defaultRules = map[int]map[int]int{
	unix.AF_INET:  {0: unix.RT_TABLE_LOCAL, 32766: unix.RT_TABLE_MAIN, 32767: unix.RT_TABLE_DEFAULT},
	unix.AF_INET6: {0: unix.RT_TABLE_LOCAL, 32766: unix.RT_TABLE_MAIN},
}

func (c *capturer) rules() error {
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := retryDump(func() ([]netlink.Rule, error) { return c.h.RuleList(fam) })
		if err != nil {
			return err
		}
		seen := map[int]bool{}
		for _, r := range rules {
			plain := r.Src == nil && r.Dst == nil && r.IifName == "" && r.OifName == "" && r.Mark == 0 &&
				(r.Mask == nil || *r.Mask == 0) && !r.Invert && r.Tos == 0
			if t, ok := defaultRules[fam][r.Priority]; ok && plain && r.Table == t && !seen[r.Priority] {
				seen[r.Priority] = true
				continue
			}
			rule := format.Rule{
				Family:   familyName(fam),
				Priority: r.Priority,
				Table:    r.Table,
				Src:      prefixString(r.Src),
				Dst:      prefixString(r.Dst),
				Iif:      r.IifName,
				Oif:      r.OifName,
				Fwmark:   r.Mark,
				Invert:   r.Invert,
			}
			if r.Mask != nil {
				rule.Fwmask = *r.Mask
			}
			if r.Protocol != 0 {
				rule.Protocol = nameOf(protoNames, int(r.Protocol))
			}
			// The netlink library does not report the rule action, so a
			// rule without a table (blackhole, nop, l3mdev) is ambiguous.
			if r.Table == 0 || r.Goto >= 0 || r.Tos != 0 || r.Flow >= 0 || r.TunID != 0 || r.SuppressPrefixlen >= 0 ||
				r.SuppressIfgroup >= 0 || r.IPProto != 0 || r.Sport != nil || r.Dport != nil || r.UIDRange != nil {
				c.unsupported("rule %d (%s): its selector or action is not supported; not recorded", r.Priority, rule.Family)
				continue
			}
			c.cfg.Rules = append(c.cfg.Rules, rule)
		}
		for _, prio := range slices.Sorted(maps.Keys(defaultRules[fam])) {
			if !seen[prio] {
				c.unsupported("default rule %d (%s, lookup %d) was removed; Replay keeps it", prio, familyName(fam), defaultRules[fam][prio])
			}
		}
	}
	return nil
}

func (c *capturer) neighbors() error {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		neighs, err := retryDump(func() ([]netlink.Neigh, error) { return c.h.NeighList(0, fam) })
		if err != nil {
			return err
		}
		for _, n := range neighs {
			name, ok := c.names[n.LinkIndex]
			if n.State&netlink.NUD_PERMANENT == 0 || !ok || c.skipped[n.LinkIndex] != "" || len(n.HardwareAddr) == 0 {
				continue
			}
			c.cfg.Neighbors = append(c.cfg.Neighbors, format.Neighbor{
				Link:  name,
				IP:    ipString(n.IP),
				MAC:   n.HardwareAddr.String(),
				State: "permanent",
			})
		}
	}
	return nil
}

func (c *capturer) sysctls() error {
	var links []string
	for _, l := range c.cfg.Links {
		if c.skipped[l.Index] == "" {
			links = append(links, l.Name)
		}
	}
	m, err := captureSysctls(c.ns, links)
	if err != nil {
		return err
	}
	if len(m) > 0 {
		c.cfg.Sysctls = m
	}
	return nil
}

func (c *capturer) sockets() error {
	for _, proto := range []string{"tcp", "udp"} {
		for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
			list := c.h.SocketDiagTCP
			if proto == "udp" {
				list = c.h.SocketDiagUDP
			}
			socks, err := retryDump(func() ([]*netlink.Socket, error) { return list(fam) })
			if err != nil {
				return fmt.Errorf("%s/%s: %w", proto, familyName(int(fam)), err)
			}
			for _, s := range socks {
				c.cfg.Sockets = append(c.cfg.Sockets, socketOf(proto, s))
			}
		}
	}
	sort.SliceStable(c.cfg.Sockets, func(i, j int) bool {
		a, b := c.cfg.Sockets[i], c.cfg.Sockets[j]
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		if a.Family != b.Family {
			return a.Family < b.Family
		}
		if a.Local != b.Local {
			return a.Local < b.Local
		}
		return a.Remote < b.Remote
	})
	return nil
}

func socketOf(proto string, s *netlink.Socket) format.Socket {
	state := ""
	if int(s.State) < len(tcpStateNames) {
		state = tcpStateNames[s.State]
	}
	if state == "" {
		state = fmt.Sprint(s.State)
	}
	if proto == "udp" && s.State == unix.BPF_TCP_CLOSE {
		state = "UNCONN"
	}
	out := format.Socket{
		Proto:  proto,
		Family: familyName(int(s.Family)),
		State:  state,
		Local:  addrPort(s.ID.Source, s.ID.SourcePort),
		Inode:  s.INode,
		UID:    s.UID,
	}
	if s.ID.DestinationPort != 0 {
		out.Remote = addrPort(s.ID.Destination, s.ID.DestinationPort)
	}
	return out
}

func addrPort(ip net.IP, port uint16) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		a = netip.IPv4Unspecified()
	}
	return netip.AddrPortFrom(a.Unmap(), port).String()
}

// nsFinder resolves namespace ids seen from the captured namespace to
// namespaces crtool can open. It looks only at crtool's own namespace and
// /run/netns: scanning every process would cost far more than a capture may.
type nsFinder struct {
	h      *netlink.Handle // in the captured namespace
	self   netns.NsHandle
	loaded bool
	byID   map[int]*nsCandidate
	all    []*nsCandidate
}

type nsCandidate struct {
	label string // format.HostNetns or a path
	ns    netns.NsHandle
	h     *netlink.Handle
}

func (c *nsCandidate) handle() (*netlink.Handle, error) {
	if c.h == nil {
		h, err := netlink.NewHandleAt(c.ns, unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("netlink in %s: %w", c.label, err)
		}
		c.h = h
	}
	return c.h, nil
}

// find returns nil when no candidate has the id.
func (f *nsFinder) find(nsid int) (*nsCandidate, error) {
	if !f.loaded {
		f.loaded = true
		if err := f.load(); err != nil {
			return nil, err
		}
	}
	return f.byID[nsid], nil
}

func (f *nsFinder) load() error {
	f.byID = map[int]*nsCandidate{}
	paths := []string{format.HostNetns}
	named, err := filepath.Glob(filepath.Join(NamedDir, "*"))
	if err != nil {
		return err
	}
	paths = append(paths, named...)
	seen := map[[2]uint64]bool{}
	if d, i, err := nsID(f.self); err == nil {
		seen[[2]uint64{d, i}] = true
	}
	for _, p := range paths {
		ns, err := openNetns(p)
		if err != nil {
			continue // a name deleted meanwhile
		}
		d, i, err := nsID(ns)
		if err != nil || seen[[2]uint64{d, i}] {
			ns.Close()
			continue
		}
		seen[[2]uint64{d, i}] = true
		// RTM_GETNSID only looks the id up; it does not assign one.
		id, err := f.h.GetNetNsIdByFd(int(ns))
		if err != nil || id < 0 {
			// Not a namespace (stale file) or no link to us.
			ns.Close()
			continue
		}
		cand := &nsCandidate{label: p, ns: ns}
		f.byID[id] = cand
		f.all = append(f.all, cand)
	}
	return nil
}

func (f *nsFinder) close() {
	for _, c := range f.all {
		if c.h != nil {
			c.h.Close()
		}
		c.ns.Close()
	}
}

// SocketsOf takes only the TCP and UDP socket inventory of the namespace at
// nsPath, a few milliseconds where a full Capture takes tens.
func SocketsOf(nsPath string) ([]format.Socket, error) {
	c := &capturer{cfg: &format.Config{}}
	err := withHandle(nsPath, unix.NETLINK_INET_DIAG, func(h *netlink.Handle) error {
		c.h = h
		return c.sockets()
	})
	if err != nil {
		return nil, fmt.Errorf("sockets of %s: %w", nsPath, err)
	}
	return c.cfg.Sockets, nil
}

// withHandle runs fn with a netlink handle of protocol proto opened in the
// namespace at nsPath.
func withHandle(nsPath string, proto int, fn func(*netlink.Handle) error) error {
	ns, err := openNetns(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, proto)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	return fn(h)
}

// AddressesOf lists the addresses (CIDR notation) configured in the
// namespace at nsPath: the cheap check that a namespace is the one a
// container had, without a full Capture (whose sysctl survey costs tens of
// milliseconds).
func AddressesOf(nsPath string) ([]string, error) {
	var out []string
	err := withHandle(nsPath, unix.NETLINK_ROUTE, func(h *netlink.Handle) error {
		addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
		for _, a := range addrs {
			out = append(out, prefixString(a.IPNet))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", nsPath, err)
	}
	return out, nil
}
