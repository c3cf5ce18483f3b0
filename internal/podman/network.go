package podman

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/crtool/crtool/format"
)

// NetworkStatus describes cfg as the single network networkName: every
// link other than lo with a global address becomes an interface, its global
// addresses the subnets, each with the default gateway of its family when
// the main table's default route leaves through that link.
func NetworkStatus(cfg *format.Config, networkName string) format.NetworkStatus {
	ifaces := map[string]format.PodmanInterface{}
	for _, l := range cfg.Links {
		if l.Kind == format.KindLoopback {
			continue
		}
		var subnets []format.PodmanSubnet
		for _, a := range cfg.Addrs {
			if a.Link != l.Name || a.Auto || a.Scope != "global" {
				continue
			}
			p, err := netip.ParsePrefix(a.CIDR)
			if err != nil {
				continue
			}
			subnets = append(subnets, format.PodmanSubnet{IPNet: a.CIDR, Gateway: defaultGateway(cfg, l.Name, p.Addr().Is4())})
		}
		if len(subnets) > 0 {
			ifaces[l.Name] = format.PodmanInterface{Subnets: subnets, MacAddress: l.MAC}
		}
	}
	return format.NetworkStatus{networkName: {Interfaces: ifaces}}
}

func defaultGateway(cfg *format.Config, link string, v4 bool) string {
	fam := "inet6"
	if v4 {
		fam = "inet"
	}
	best := -1
	gw := ""
	for _, r := range cfg.Routes {
		if r.Dst != "" || r.Link != link || r.Family != fam || r.Gateway == "" || (r.Table != 0 && r.Table != 254) {
			continue
		}
		if best < 0 || r.Priority < best {
			best, gw = r.Priority, r.Gateway
		}
	}
	return gw
}

// NetworkConfig builds a Config from a Podman network.status so that a
// Podman archive's network can be rebuilt: lo up, and per interface a veth
// (peer name, namespace and bridge left to ReplayOptions, MTU to the
// kernel) with its MAC, its addresses and a default route per gateway; with
// several interfaces the default routes get metrics 0, 1, ... in the order
// of network and interface names.
func NetworkConfig(status []byte) (*format.Config, error) {
	var st format.NetworkStatus
	if err := json.Unmarshal(status, &st); err != nil {
		return nil, fmt.Errorf("parse podman network status: %w", err)
	}
	cfg := &format.Config{
		Links:  []format.Link{{Name: "lo", Kind: format.KindLoopback, MTU: 65536, Flags: []string{"up", "loopback"}}},
		Addrs:  []format.Addr{},
		Routes: []format.Route{},
	}
	var networks []string
	for n := range st {
		networks = append(networks, n)
	}
	sort.Strings(networks)
	seen := map[string]bool{}
	// Metrics 0, 1, ... per family keep several default routes apart.
	defaults := map[string]int{}
	for _, network := range networks {
		var names []string
		for name := range st[network].Interfaces {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if seen[name] {
				return nil, fmt.Errorf("podman network status: interface %s appears in more than one network", name)
			}
			seen[name] = true
			if err := addPodmanInterface(cfg, network, name, st[network].Interfaces[name], defaults); err != nil {
				return nil, err
			}
		}
	}
	return cfg, nil
}

func addPodmanInterface(cfg *format.Config, network, name string, iface format.PodmanInterface, defaults map[string]int) error {
	link := format.Link{Name: name, Kind: format.KindVeth, Flags: []string{"up", "broadcast", "multicast"}, Peer: &format.Peer{Netns: format.HostNetns}}
	if iface.MacAddress != "" {
		mac, err := net.ParseMAC(iface.MacAddress)
		if err != nil {
			return fmt.Errorf("podman network %s interface %s: mac_address: %w", network, name, err)
		}
		link.MAC = mac.String()
	}
	cfg.Links = append(cfg.Links, link)
	gateways := map[string]bool{}
	for _, s := range iface.Subnets {
		p, err := netip.ParsePrefix(s.IPNet)
		if err != nil {
			return fmt.Errorf("podman network %s interface %s: ipnet: %w", network, name, err)
		}
		cfg.Addrs = append(cfg.Addrs, format.Addr{
			Link: name, CIDR: p.String(), Scope: "global",
			Flags: []string{"permanent"}, ValidLft: format.Forever, PreferredLft: format.Forever,
		})
		if s.Gateway == "" || gateways[s.Gateway] {
			continue
		}
		gw, err := netip.ParseAddr(s.Gateway)
		if err != nil {
			return fmt.Errorf("podman network %s interface %s: gateway: %w", network, name, err)
		}
		gateways[s.Gateway] = true
		fam := "inet"
		if gw.Is6() && !gw.Is4In6() {
			fam = "inet6"
		}
		cfg.Routes = append(cfg.Routes, format.Route{
			Family: fam, Table: 254, Type: "unicast", Gateway: gw.String(), Link: name,
			Scope: "global", Protocol: "static", Priority: defaults[fam],
		})
		defaults[fam]++
	}
	return nil
}
