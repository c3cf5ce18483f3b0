package netns

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sort"
)

// PodmanStatus is the content of a Podman checkpoint's network.status: the
// netavark StatusBlock of each network, by network name.
type PodmanStatus map[string]PodmanNetwork

// PodmanNetwork is netavark's StatusBlock.
type PodmanNetwork struct {
	Interfaces       map[string]PodmanInterface `json:"interfaces,omitempty"`
	DNSServerIPs     []string                   `json:"dns_server_ips,omitempty"`
	DNSSearchDomains []string                   `json:"dns_search_domains,omitempty"`
}

// PodmanInterface is netavark's NetInterface.
type PodmanInterface struct {
	Subnets    []PodmanSubnet `json:"subnets,omitempty"`
	MacAddress string         `json:"mac_address"`
}

// PodmanSubnet is netavark's NetAddress: the container's address with its
// prefix length, and the gateway of that subnet.
type PodmanSubnet struct {
	IPNet   string `json:"ipnet"`
	Gateway string `json:"gateway,omitempty"`
}

// ToPodmanStatus describes cfg as the single network networkName: every
// link other than lo with a global address becomes an interface, its global
// addresses the subnets, each with the default gateway of its family when
// the main table's default route leaves through that link.
func ToPodmanStatus(cfg *Config, networkName string) PodmanStatus {
	ifaces := map[string]PodmanInterface{}
	for _, l := range cfg.Links {
		if l.Kind == KindLoopback {
			continue
		}
		var subnets []PodmanSubnet
		for _, a := range cfg.Addrs {
			if a.Link != l.Name || a.Auto || a.Scope != "global" {
				continue
			}
			p, err := netip.ParsePrefix(a.CIDR)
			if err != nil {
				continue
			}
			subnets = append(subnets, PodmanSubnet{IPNet: a.CIDR, Gateway: defaultGateway(cfg, l.Name, p.Addr().Is4())})
		}
		if len(subnets) > 0 {
			ifaces[l.Name] = PodmanInterface{Subnets: subnets, MacAddress: l.MAC}
		}
	}
	return PodmanStatus{networkName: {Interfaces: ifaces}}
}

func defaultGateway(cfg *Config, link string, v4 bool) string {
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

// ConfigFromPodman builds a Config from a Podman network.status so that a
// Podman archive's network can be rebuilt: lo up, and per interface a veth
// (peer name, namespace and bridge left to ReplayOptions, MTU to the
// kernel) with its MAC, its addresses and a default route per gateway; with
// several interfaces the default routes get metrics 0, 1, ... in the order
// of network and interface names.
func ConfigFromPodman(status []byte) (*Config, error) {
	var st PodmanStatus
	if err := json.Unmarshal(status, &st); err != nil {
		return nil, fmt.Errorf("parse podman network status: %w", err)
	}
	cfg := &Config{
		Links:  []Link{{Name: "lo", Kind: KindLoopback, MTU: 65536, Flags: []string{"up", "loopback"}}},
		Addrs:  []Addr{},
		Routes: []Route{},
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

func addPodmanInterface(cfg *Config, network, name string, iface PodmanInterface, defaults map[string]int) error {
	link := Link{Name: name, Kind: KindVeth, Flags: []string{"up", "broadcast", "multicast"}, Peer: &Peer{Netns: HostNetns}}
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
		cfg.Addrs = append(cfg.Addrs, Addr{
			Link: name, CIDR: p.String(), Scope: "global",
			Flags: []string{"permanent"}, ValidLft: Forever, PreferredLft: Forever,
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
		cfg.Routes = append(cfg.Routes, Route{
			Family: fam, Table: 254, Type: "unicast", Gateway: gw.String(), Link: name,
			Scope: "global", Protocol: "static", Priority: defaults[fam],
		})
		defaults[fam]++
	}
	return nil
}
