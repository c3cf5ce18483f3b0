package network

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
)

// Quiesce takes the links of the namespace that lead outside it down, so that
// no packet reaches it until Resume. A drop-all Lock alone is not enough for
// a namespace that is about to be deleted: the kernel unhooks nftables
// before it removes the devices, and a peer's retransmission arriving in
// between would be answered with a reset. IPv6 addresses are kept across the
// down (keep_addr_on_down); routes through the links go, and Resume replays
// them.
func Quiesce(nsPath string, cfg *format.Config) error {
	r, err := newReplayer(nsPath, cfg)
	if err != nil {
		return err
	}
	defer r.close()
	var errs []error
	for _, l := range outsideLinks(cfg) {
		link, err := r.h.LinkByName(l.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("quiesce link %s: %w", l.Name, err))
			continue
		}
		keep := map[string]string{"net.ipv6.conf." + l.Name + ".keep_addr_on_down": "1"}
		if err := writeSysctls(r.ns, keep, func(int) bool { return true }); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
		if err := r.h.LinkSetDown(link); err != nil {
			errs = append(errs, fmt.Errorf("quiesce link %s: %w", l.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Resume undoes Quiesce: the links come back up with their recorded
// keep_addr_on_down setting, and the routes through them are replayed
// (routes that survived are left as they are).
func Resume(nsPath string, cfg *format.Config) error {
	r, err := newReplayer(nsPath, cfg)
	if err != nil {
		return err
	}
	defer r.close()
	for _, l := range outsideLinks(cfg) {
		if !slices.Contains(l.Flags, "up") {
			continue
		}
		key := "net.ipv6.conf." + l.Name + ".keep_addr_on_down"
		val, ok := cfg.Sysctls[key]
		if !ok {
			val = "0"
		}
		if err := writeSysctls(r.ns, map[string]string{key: val}, func(int) bool { return true }); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		link, err := r.h.LinkByName(l.Name)
		if err == nil {
			err = r.h.LinkSetUp(link)
		}
		if err != nil {
			return fmt.Errorf("resume link %s: %w", l.Name, err)
		}
	}
	var missing []format.Route
	for _, rt := range cfg.Routes {
		nr, err := netlinkRoute(rt)
		if err != nil {
			return err
		}
		if rt.Link != "" {
			if l, err := r.h.LinkByName(rt.Link); err == nil {
				nr.LinkIndex = l.Attrs().Index
			}
		}
		if have, _ := r.h.RouteListFiltered(nr.Family, nr, routeFilterMask(nr)); len(have) > 0 {
			continue
		}
		missing = append(missing, rt)
	}
	return addRoutes(r.h, missing)
}

// routeFilterMask selects the fields that identify a route.
func routeFilterMask(nr *netlink.Route) uint64 {
	mask := netlink.RT_FILTER_TABLE | netlink.RT_FILTER_DST
	if nr.Gw != nil {
		mask |= netlink.RT_FILTER_GW
	}
	return mask
}

// outsideLinks are the links through which packets enter the namespace
// from elsewhere: everything but loopback and in-namespace bridges.
func outsideLinks(cfg *format.Config) []format.Link {
	var out []format.Link
	for _, l := range cfg.Links {
		if l.Kind == format.KindLoopback || l.Kind == format.KindBridge {
			continue
		}
		out = append(out, l)
	}
	return out
}
