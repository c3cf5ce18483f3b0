package network

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/crtool/crtool/format"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		link         netlink.Link
		kind, driver string
	}{
		{&netlink.Veth{}, format.KindVeth, ""},
		{&netlink.Bridge{}, format.KindBridge, ""},
		{&netlink.Dummy{}, format.KindDummy, ""},
		{&netlink.Vlan{}, format.KindVlan, ""},
		{&netlink.Macvlan{}, format.KindMacvlan, ""},
		{&netlink.Device{LinkAttrs: netlink.LinkAttrs{Flags: net.FlagLoopback}}, format.KindLoopback, ""},
		{&netlink.Device{}, format.KindDevice, ""},
		{&netlink.Vxlan{}, format.KindOther, "vxlan"},
		{&netlink.Wireguard{}, format.KindOther, "wireguard"},
		{&netlink.Macvtap{}, format.KindOther, "macvtap"},
		{&netlink.Ifb{}, format.KindOther, "ifb"},
		{&netlink.GenericLink{LinkType: "sit"}, format.KindOther, "sit"},
	} {
		t.Run(tc.link.Type(), func(t *testing.T) {
			kind, driver := classify(tc.link)
			if kind != tc.kind || driver != tc.driver {
				t.Errorf("classify(%T) = %q, %q; want %q, %q", tc.link, kind, driver, tc.kind, tc.driver)
			}
		})
	}
}

// TestUnsupportedLinks uses vxlan and ifb, which the test kernel has (gre,
// sit and wireguard may be missing).
func TestUnsupportedLinks(t *testing.T) {
	e := newEnv(t)
	ns, path := e.netns("u")
	_, dstPath := e.netns("ud")
	e.ipScript(ns, `
		link set lo up
		link add vx0 type vxlan id 42 dstport 4789
		link add ifb9 type ifb
		addr add 10.201.50.1/24 dev vx0
		link set vx0 up
		route add 10.201.51.0/24 dev vx0
		neigh add 10.201.50.9 lladdr 02:c7:00:00:50:09 dev vx0 nud permanent`)

	cfg, err := Capture(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ name, driver string }{{"vx0", "vxlan"}, {"ifb9", "ifb"}} {
		l := cfg.LinkByName(want.name)
		if l == nil || l.Kind != format.KindOther || l.Driver != want.driver {
			t.Errorf("link %s = %+v, want kind other, driver %s", want.name, l, want.driver)
		}
		if !slices.ContainsFunc(cfg.Unsupported, func(s string) bool {
			return strings.Contains(s, want.name) && strings.Contains(s, want.driver)
		}) {
			t.Errorf("unsupported = %q, want an entry for %s (%s)", cfg.Unsupported, want.name, want.driver)
		}
	}
	if a := findAddr(cfg, "vx0", "10.201.50.1/24"); a != nil {
		t.Errorf("address on vx0 recorded: %+v", a)
	}
	for _, r := range cfg.Routes {
		if r.Link == "vx0" {
			t.Errorf("route on vx0 recorded: %s", r)
		}
	}
	if !slices.ContainsFunc(cfg.Unsupported, func(s string) bool { return strings.Contains(s, "route 10.201.51.0/24") }) {
		t.Errorf("unsupported = %q, want the route on vx0", cfg.Unsupported)
	}
	if len(cfg.Neighbors) > 0 {
		t.Errorf("neighbors on vx0 recorded: %+v", cfg.Neighbors)
	}

	// Replay recreates the rest and leaves the unsupported links out.
	if err := Replay(dstPath, cfg, ReplayOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := Capture(dstPath)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"link ifb9: only in the first", "link vx0: only in the first"}
	if d := Diff(cfg, got); !slices.Equal(d, want) {
		t.Errorf("diff = %q, want %q", d, want)
	}
}
