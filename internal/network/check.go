package network

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
)

// Check is the pre-flight for Replay, before anything is created: each
// bridge exists (unless CreateBridge), each peer name is free in its
// namespace, and none of the addresses to replay (other than loopback and
// link-local ones) is configured in crtool's namespace, in a peer namespace
// or in a namespace under /run/netns attached to the same bridge. All
// problems are reported together; errors.Is tells ErrBridgeMissing,
// ErrPeerExists and ErrAddressInUse apart.
func Check(cfg *format.Config, opts ReplayOptions) error {
	plans, err := planVeths(cfg, opts)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	c := &checker{opened: map[string]*nsCandidate{}, scanned: map[[2]uint64]bool{}}
	defer c.close()

	var errs []error
	// Addresses already there would be found in the namespaces below.
	scan := []*nsCandidate{}
	host, err := c.open(format.HostNetns)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	scan = append(scan, host)
	for link, p := range plans {
		cand, err := c.open(p.peerNetns)
		if err != nil {
			errs = append(errs, fmt.Errorf("link %s: %w", link, err))
			continue
		}
		scan = append(scan, cand)
		attached, err := c.checkPeer(link, p, cand, opts)
		if err != nil {
			errs = append(errs, err)
		}
		scan = append(scan, attached...)
	}
	want := replayedAddrs(cfg)
	for _, cand := range scan {
		if err := c.scanAddrs(cand, want); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("check: %w", errors.Join(errs...))
	}
	return nil
}

type checker struct {
	opened  map[string]*nsCandidate
	scanned map[[2]uint64]bool
	finders []*nsFinder
}

func (c *checker) open(path string) (*nsCandidate, error) {
	if cand, ok := c.opened[path]; ok {
		return cand, nil
	}
	ns, err := openNetns(path)
	if err != nil {
		return nil, err
	}
	cand := &nsCandidate{label: path, ns: ns}
	c.opened[path] = cand
	return cand, nil
}

func (c *checker) close() {
	for _, cand := range c.opened {
		if cand.h != nil {
			cand.h.Close()
		}
		cand.ns.Close()
	}
	for _, f := range c.finders {
		f.close()
	}
}

// checkPeer checks the peer name and the bridge, and returns the namespaces
// whose veths are attached to that bridge.
func (c *checker) checkPeer(link string, p vethPlan, cand *nsCandidate, opts ReplayOptions) ([]*nsCandidate, error) {
	h, err := cand.handle()
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", link, err)
	}
	var errs []error
	if _, err := h.LinkByName(p.peerName); err == nil {
		errs = append(errs, fmt.Errorf("link %s: peer %s in %s: %w", link, p.peerName, nsLabel(p.peerNetns), ErrPeerExists))
	}
	if p.bridge == "" {
		return nil, errors.Join(errs...)
	}
	br, err := h.LinkByName(p.bridge)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		if !opts.CreateBridge {
			errs = append(errs, errdefs.Hint(fmt.Errorf("link %s: bridge %s in %s: %w", link, p.bridge, nsLabel(p.peerNetns), ErrBridgeMissing), "pass ", "CreateBridge", " to create it"))
		}
		return nil, errors.Join(errs...)
	case err != nil:
		errs = append(errs, fmt.Errorf("link %s: bridge %s in %s: %w", link, p.bridge, nsLabel(p.peerNetns), err))
		return nil, errors.Join(errs...)
	case br.Type() != "bridge":
		errs = append(errs, fmt.Errorf("link %s: %s in %s is a %s, not a bridge", link, p.bridge, nsLabel(p.peerNetns), br.Type()))
		return nil, errors.Join(errs...)
	}
	attached, err := c.attached(h, cand.ns, br.Attrs().Index)
	if err != nil {
		errs = append(errs, fmt.Errorf("link %s: ports of bridge %s: %w", link, p.bridge, err))
	}
	return attached, errors.Join(errs...)
}

// attached finds the namespaces in /run/netns (or crtool's) whose veths are
// ports of the bridge.
func (c *checker) attached(h *netlink.Handle, ns netns.NsHandle, bridge int) ([]*nsCandidate, error) {
	links, err := retryDump(h.LinkList)
	if err != nil {
		return nil, err
	}
	f := &nsFinder{h: h, self: ns}
	c.finders = append(c.finders, f)
	var out []*nsCandidate
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex != bridge || a.NetNsID < 0 {
			continue
		}
		cand, err := f.find(a.NetNsID)
		if err != nil {
			return nil, err
		}
		if cand != nil {
			out = append(out, cand)
		}
	}
	return out, nil
}

// replayedAddrs are the addresses that must be unique on the network.
func replayedAddrs(cfg *format.Config) map[netip.Addr]string {
	loopbacks := map[string]bool{}
	for _, l := range cfg.Links {
		if l.Kind == format.KindLoopback {
			loopbacks[l.Name] = true
		}
	}
	out := map[netip.Addr]string{}
	for _, a := range cfg.Addrs {
		p, err := netip.ParsePrefix(a.CIDR)
		if err != nil || a.Auto || loopbacks[a.Link] {
			continue
		}
		ip := p.Addr()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			continue
		}
		out[ip] = a.Link
	}
	return out
}

func (c *checker) scanAddrs(cand *nsCandidate, want map[netip.Addr]string) error {
	if len(want) == 0 {
		return nil
	}
	d, i, err := nsID(cand.ns)
	if err != nil {
		return fmt.Errorf("%s: %w", cand.label, err)
	}
	if c.scanned[[2]uint64{d, i}] {
		return nil
	}
	c.scanned[[2]uint64{d, i}] = true
	h, err := cand.handle()
	if err != nil {
		return err
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("addresses in %s: %w", cand.label, err)
	}
	var errs []error
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if _, dup := want[ip]; !dup {
			continue
		}
		where := fmt.Sprintf("ifindex %d", a.LinkIndex)
		if l, err := h.LinkByIndex(a.LinkIndex); err == nil {
			where = l.Attrs().Name
		}
		errs = append(errs, fmt.Errorf("address %s (for %s) is already configured on %s in %s: %w", ip, want[ip], where, nsLabel(cand.label), ErrAddressInUse))
	}
	return errors.Join(errs...)
}
