package network

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/crtool/crtool/format"
)

// buildSource fills namespace ns with a bit of everything Capture records.
// Its eth0 is a veth whose peer "vs" sits on bridge br0 in namespace hub.
// It returns whether a dummy link could be created.
func buildSource(e *env, ns, hub string) (dummy bool) {
	e.t.Helper()
	e.ipScript(hub, `
		link add br0 type bridge
		link set br0 up`)
	e.ipScript(ns, `
		link set lo up
		link add eth0 address 02:c7:00:00:00:01 mtu 1400 type veth peer name vs netns `+hub+`
		link add br1 address 02:c7:00:00:01:01 type bridge
		link add mv0 address 02:c7:00:00:02:01 link eth0 type macvlan mode bridge
		link add ve1 address 02:c7:00:00:03:01 type veth peer name ve2 address 02:c7:00:00:03:02
		link set ve2 master br1`)
	e.ip(hub, "link", "set", "vs", "master", "br0", "up")
	dummy = e.kernelHas(ns, "dum0", "type", "dummy")
	if dummy {
		e.ipScript(ns, `
			link set dum0 address 02:c7:00:00:04:01 up
			addr add 10.201.4.1/24 dev dum0`)
	}
	// Global sysctls before the addresses, as a runtime would. The IPv6
	// default accept_ra changes after the links exist, which keep the old
	// value (IPv4 defaults, unlike IPv6 ones, reach existing links too).
	e.sysctl(ns, "net.ipv4.ip_forward", "1")
	e.sysctl(ns, "net.ipv4.ip_local_port_range", "20000 40000")
	e.sysctl(ns, "net.ipv4.conf.eth0.rp_filter", "2")
	e.sysctl(ns, "net.ipv6.conf.br1.disable_ipv6", "1")
	e.sysctl(ns, "net.ipv4.conf.default.arp_ignore", "1")
	e.sysctl(ns, "net.ipv6.conf.default.accept_ra", "0")
	e.ipScript(ns, `
		addr add 10.201.1.2/24 dev eth0
		addr add 10.201.1.3/24 dev eth0
		addr add 10.201.1.4/24 dev eth0 valid_lft 3600 preferred_lft 1800
		addr add 10.201.1.9/32 dev eth0 label eth0:vip
		addr add fd00:c7::2/64 dev eth0 nodad
		addr add fd00:c7:1::2/64 dev eth0
		addr add 10.201.2.1/24 dev br1
		addr add 10.201.3.2/24 dev mv0
		addr add fd00:c7:3::2/64 dev mv0 nodad noprefixroute
		addr add 10.201.255.1/32 dev lo
		link set eth0 up
		link set br1 up
		link set mv0 up
		link set ve1 up
		link set ve2 up
		route add 10.201.10.0/24 via 10.201.1.1 dev eth0 metric 50
		route add default via 10.201.1.1
		route add 10.201.20.0/24 dev br1 proto static
		route add blackhole 10.201.99.0/24
		route add 10.201.30.0/24 via 10.201.31.1 dev eth0 onlink
		-6 route add default via fd00:c7::1 dev eth0
		-6 route add fd00:c7:99::/64 via fd00:c7::1 metric 10
		route add default via 10.201.1.254 dev eth0 table 100
		route add 10.201.2.0/24 dev br1 table 100
		route add unreachable 10.201.98.0/24 table 100
		-6 route add unreachable fd00:c7:98::/64 table 100
		-6 route add default via fd00:c7::fe dev eth0 table 100
		rule add from 10.201.1.3 lookup 100 priority 1000
		rule add fwmark 0x10/0xff lookup 100 priority 1001
		rule add not to 10.201.0.0/16 iif eth0 lookup 100 priority 1002
		-6 rule add from fd00:c7::/64 lookup 100 priority 1000
		neigh add 10.201.1.77 lladdr 02:c7:00:00:00:77 dev eth0 nud permanent
		neigh add fd00:c7::77 lladdr 02:c7:00:00:00:78 dev eth0 nud permanent`)
	return dummy
}

// checkSourceCapture fails when Capture missed something buildSource made,
// so an empty capture cannot pass the round trip.
func checkSourceCapture(t *testing.T, cfg *format.Config, hubPath string, dummy bool) {
	t.Helper()
	eth0 := cfg.LinkByName("eth0")
	switch {
	case eth0 == nil:
		t.Fatal("eth0 not captured")
	case eth0.Kind != format.KindVeth || eth0.MAC != "02:c7:00:00:00:01" || eth0.MTU != 1400 || !slices.Contains(eth0.Flags, "up"):
		t.Errorf("eth0 = %+v", eth0)
	case eth0.Peer == nil || eth0.Peer.Name != "vs" || eth0.Peer.Netns != hubPath || eth0.Peer.Master != "br0" || eth0.Peer.MTU != 1500:
		t.Errorf("eth0 peer = %+v, want vs in %s on br0", eth0.Peer, hubPath)
	}
	if l := cfg.LinkByName("lo"); l == nil || l.Kind != format.KindLoopback {
		t.Errorf("lo = %+v", l)
	}
	if l := cfg.LinkByName("br1"); l == nil || l.Kind != format.KindBridge {
		t.Errorf("br1 = %+v", l)
	}
	if l := cfg.LinkByName("mv0"); l == nil || l.Kind != format.KindMacvlan || l.MacvlanMode != "bridge" || l.Parent == nil || *l.Parent != (format.Parent{Name: "eth0", Netns: format.SelfNetns}) {
		t.Errorf("mv0 = %+v", l)
	}
	if l := cfg.LinkByName("ve2"); l == nil || l.Master != "br1" || l.Peer == nil || l.Peer.Name != "ve1" || l.Peer.Netns != format.SelfNetns {
		t.Errorf("ve2 = %+v", l)
	}
	if dummy {
		if l := cfg.LinkByName("dum0"); l == nil || l.Kind != format.KindDummy {
			t.Errorf("dum0 = %+v", l)
		}
	}

	for _, want := range []struct{ link, cidr string }{
		{"eth0", "10.201.1.2/24"}, {"eth0", "10.201.1.3/24"}, {"eth0", "10.201.1.4/24"}, {"eth0", "10.201.1.9/32"},
		{"eth0", "fd00:c7::2/64"}, {"eth0", "fd00:c7:1::2/64"}, {"br1", "10.201.2.1/24"},
		{"mv0", "10.201.3.2/24"}, {"mv0", "fd00:c7:3::2/64"}, {"lo", "10.201.255.1/32"},
	} {
		if findAddr(cfg, want.link, want.cidr) == nil {
			t.Errorf("address %s on %s not captured", want.cidr, want.link)
		}
	}
	if a := findAddr(cfg, "eth0", "10.201.1.3/24"); a != nil && !slices.Contains(a.Flags, "secondary") {
		t.Errorf("10.201.1.3/24 flags = %v, want secondary", a.Flags)
	}
	if a := findAddr(cfg, "eth0", "10.201.1.4/24"); a != nil && (a.ValidLft == format.Forever || a.ValidLft > 3600 || a.PreferredLft > 1800) {
		t.Errorf("10.201.1.4/24 lifetimes = %d/%d, want at most 3600/1800", a.ValidLft, a.PreferredLft)
	}
	if a := findAddr(cfg, "eth0", "10.201.1.9/32"); a != nil && a.Label != "eth0:vip" {
		t.Errorf("10.201.1.9/32 label = %q", a.Label)
	}
	if a := findAddr(cfg, "mv0", "fd00:c7:3::2/64"); a != nil && !slices.Contains(a.Flags, "noprefixroute") {
		t.Errorf("fd00:c7:3::2/64 flags = %v, want noprefixroute", a.Flags)
	}
	if a := findAddr(cfg, "lo", "127.0.0.1/8"); a == nil || !a.Auto {
		t.Errorf("lo 127.0.0.1/8 = %+v, want auto", a)
	}
	if a := findAddr(cfg, "eth0", "fe80::c7:ff:fe00:1/64"); a == nil || !a.Auto {
		t.Errorf("eth0 link-local = %+v, want auto", a)
	}

	routes := routeStrings(cfg)
	for _, want := range []string{
		"10.201.10.0/24 via 10.201.1.1 dev eth0 metric 50",
		"default via 10.201.1.1 dev eth0",
		"10.201.20.0/24 dev br1",
		"blackhole 10.201.99.0/24",
		"10.201.30.0/24 via 10.201.31.1 dev eth0",
		"default via fd00:c7::1 dev eth0 (inet6) metric 1024",
		"fd00:c7:99::/64 via fd00:c7::1 dev eth0 metric 10",
		"default via 10.201.1.254 dev eth0 table 100",
		"10.201.2.0/24 dev br1 table 100",
		"unreachable 10.201.98.0/24 table 100",
		"unreachable fd00:c7:98::/64 table 100 metric 1024",
		"default via fd00:c7::fe dev eth0 table 100 (inet6) metric 1024",
	} {
		if _, ok := routes[want]; !ok {
			t.Errorf("route %q not captured", want)
		}
	}
	if r := routes["10.201.20.0/24 dev br1"]; r.Protocol != "static" || r.Scope != "link" {
		t.Errorf("10.201.20.0/24 protocol/scope = %s/%s, want static/link", r.Protocol, r.Scope)
	}
	if r := routes["10.201.30.0/24 via 10.201.31.1 dev eth0"]; !r.Onlink {
		t.Errorf("10.201.30.0/24 is not onlink")
	}
	for _, r := range cfg.Routes {
		if r.Protocol == "kernel" || r.Table == 255 {
			t.Errorf("kernel route captured: %+v", r)
		}
	}

	wantRules := []format.Rule{
		{Family: "inet", Priority: 1000, Table: 100, Src: "10.201.1.3/32"},
		{Family: "inet", Priority: 1001, Table: 100, Fwmark: 0x10, Fwmask: 0xff},
		{Family: "inet", Priority: 1002, Table: 100, Dst: "10.201.0.0/16", Iif: "eth0", Invert: true},
		{Family: "inet6", Priority: 1000, Table: 100, Src: "fd00:c7::/64"},
	}
	if len(cfg.Rules) != len(wantRules) {
		t.Errorf("rules = %+v, want %d", cfg.Rules, len(wantRules))
	}
	for _, want := range wantRules {
		found := false
		for _, r := range cfg.Rules {
			r.Protocol = ""
			found = found || r == want
		}
		if !found {
			t.Errorf("rule %+v not captured (have %+v)", want, cfg.Rules)
		}
	}

	wantNeigh := []format.Neighbor{
		{Link: "eth0", IP: "10.201.1.77", MAC: "02:c7:00:00:00:77", State: "permanent"},
		{Link: "eth0", IP: "fd00:c7::77", MAC: "02:c7:00:00:00:78", State: "permanent"},
	}
	if !slices.Equal(cfg.Neighbors, wantNeigh) {
		t.Errorf("neighbors = %+v, want %+v", cfg.Neighbors, wantNeigh)
	}

	for k, v := range map[string]string{
		"net.ipv4.ip_forward":              "1",
		"net.ipv4.ip_local_port_range":     "20000\t40000",
		"net.ipv4.conf.eth0.rp_filter":     "2",
		"net.ipv6.conf.br1.disable_ipv6":   "1",
		"net.ipv4.conf.default.arp_ignore": "1",
		"net.ipv4.conf.eth0.forwarding":    "1",
		"net.ipv4.conf.eth0.arp_ignore":    "1",
		"net.ipv6.conf.default.accept_ra":  "0",
		"net.ipv6.conf.eth0.accept_ra":     "1", // the fresh value, kept when the default changed
	} {
		if got, ok := cfg.Sysctls[k]; !ok || got != v {
			t.Errorf("sysctl %s = %q (recorded %v), want %q", k, got, ok, v)
		}
	}
	if _, ok := cfg.Sysctls["net.ipv6.conf.eth0.mtu"]; ok {
		t.Errorf("derived net.ipv6.conf.eth0.mtu recorded")
	}
	if len(cfg.Unsupported) > 0 {
		t.Errorf("unsupported = %q", cfg.Unsupported)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		linksDown bool
	}{
		{"links up", false},
		{"links down then SetLinksUp", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			hubA, hubAPath := e.netns("ha")
			src, srcPath := e.netns("s")
			hubB, hubBPath := e.netns("hb")
			_, dstPath := e.netns("d")
			dummy := buildSource(e, src, hubA)
			e.ipScript(hubB, `
				link add br9 type bridge
				link set br9 up`)

			start := time.Now()
			c1, err := Capture(srcPath)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("capture of %d links, %d addresses, %d routes, %d sysctls took %v",
				len(c1.Links), len(c1.Addrs), len(c1.Routes), len(c1.Sysctls), time.Since(start))
			checkSourceCapture(t, c1, hubAPath, dummy)

			// Replay what an archive would hold, not the in-memory value.
			data, err := json.Marshal(c1)
			if err != nil {
				t.Fatal(err)
			}
			var stored format.Config
			if err := json.Unmarshal(data, &stored); err != nil {
				t.Fatal(err)
			}
			opts := ReplayOptions{PeerNetns: hubBPath, PeerName: "vd", Bridge: "br9", LinksDown: tc.linksDown}
			if err := Check(&stored, opts); err != nil {
				t.Fatalf("check: %v", err)
			}
			if err := Replay(dstPath, &stored, opts, nil); err != nil {
				t.Fatal(err)
			}
			if tc.linksDown {
				mid, err := Capture(dstPath)
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range mid.Links {
					if slices.Contains(l.Flags, "up") {
						t.Errorf("link %s is up after Replay with LinksDown", l.Name)
					}
				}
				if len(mid.Routes) > 0 {
					t.Errorf("routes before SetLinksUp: %+v", mid.Routes)
				}
				if err := SetLinksUp(dstPath, &stored); err != nil {
					t.Fatal(err)
				}
			}

			c2, err := Capture(dstPath)
			if err != nil {
				t.Fatal(err)
			}
			if d := Diff(c1, c2); len(d) > 0 {
				t.Errorf("replayed namespace differs:\n%s", strings.Join(d, "\n"))
			}
			eth0 := c2.LinkByName("eth0")
			if eth0 == nil || eth0.Peer == nil || eth0.Peer.Name != "vd" || eth0.Peer.Netns != hubBPath || eth0.Peer.Master != "br9" {
				t.Errorf("replayed eth0 = %+v, want peer vd in %s on br9", eth0, hubBPath)
			}
			if a := findAddr(c2, "lo", "127.0.0.1/8"); a == nil {
				t.Errorf("replayed lo has no 127.0.0.1/8")
			}
			if a := findAddr(c2, "eth0", "fd00:c7:1::2/64"); a == nil || !slices.Contains(a.Flags, "nodad") {
				t.Errorf("replayed fd00:c7:1::2/64 = %+v, want nodad", a)
			}
			checkPeerUp(t, hubBPath, "vd")
		})
	}
}

func checkPeerUp(t *testing.T, nsPath, name string) {
	t.Helper()
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("peer %s in %s: %v", name, nsPath, err)
	}
	if l.Attrs().RawFlags&1 == 0 {
		t.Errorf("peer %s is down", name)
	}
}
