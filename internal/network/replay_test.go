package network

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/undo"
)

// TestReplayUndo makes the route step fail after the veth pair (peer on the
// host) and maybe the bridge exist, and checks Replay removed them.
func TestReplayUndo(t *testing.T) {
	for _, tc := range []struct {
		name         string
		createBridge bool // Replay creates the bridge, so it must remove it
	}{
		{"existing bridge", false},
		{"created bridge", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			_, path := e.netns("f")
			br, peer := e.name("br"), e.name("h")
			e.hostLink(br)
			e.hostLink(peer)
			if !tc.createBridge {
				e.ip("", "link", "add", br, "type", "bridge")
			}
			cfg := vethConfig(format.Peer{Name: peer, Netns: format.HostNetns, Master: br}, "10.201.8.2/24")
			// The gateway is on no connected network: the kernel refuses it.
			cfg.Routes = append(cfg.Routes, format.Route{Family: "inet", Table: 254, Type: "unicast", Dst: "10.201.9.0/24",
				Gateway: "10.201.200.1", Link: "eth0", Scope: "global", Protocol: "boot"})

			var rollback undo.Stack
			err := Replay(path, cfg, ReplayOptions{CreateBridge: tc.createBridge}, &rollback)
			if err == nil {
				t.Fatal("Replay succeeded with an unreachable gateway")
			}
			if rollback.Len() == 0 {
				t.Fatal("Replay registered no undo step")
			}
			if err := rollback.Run(); err != nil {
				t.Fatalf("undo: %v", err)
			}
			if want := "replay route 10.201.9.0/24 via 10.201.200.1 dev eth0:"; !strings.Contains(err.Error(), want) {
				t.Errorf("error = %q, want it to contain %q", err, want)
			}
			if hostLinkExists(peer) {
				t.Errorf("host veth %s left behind", peer)
			}
			if hostLinkExists(br) != !tc.createBridge {
				t.Errorf("bridge %s exists = %v, want %v", br, hostLinkExists(br), !tc.createBridge)
			}
			got, err := Capture(path)
			if err != nil {
				t.Fatal(err)
			}
			if got.LinkByName("eth0") != nil {
				t.Errorf("eth0 left in the namespace")
			}
		})
	}
}

func TestReplayOptionErrors(t *testing.T) {
	two := vethConfig(format.Peer{Netns: format.HostNetns})
	two.Links = append(two.Links, format.Link{Name: "eth1", Kind: format.KindVeth, Peer: &format.Peer{Netns: format.HostNetns}})
	for _, tc := range []struct {
		name string
		cfg  *format.Config
		opts ReplayOptions
		want string
	}{
		{"peer name with two veths", two, ReplayOptions{PeerName: "v"}, "exactly one veth"},
		{"unknown peer namespace", vethConfig(format.Peer{Name: "v"}), ReplayOptions{}, "PeerNetns"},
		{"self as peer namespace", vethConfig(format.Peer{Name: "v"}), ReplayOptions{PeerNetns: format.SelfNetns}, "cannot be"},
		{"peer name too long", vethConfig(format.Peer{Netns: format.HostNetns}), ReplayOptions{PeerName: "a-very-long-name-indeed"}, "longer than 15"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := planVeths(tc.cfg, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("planVeths = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestNetlinkAddr(t *testing.T) {
	for _, tc := range []struct {
		name        string
		addr        format.Addr
		flags       int
		valid, pref int
		broadcast   string
	}{
		{"ipv4 forever", format.Addr{CIDR: "10.201.0.2/24", ValidLft: format.Forever, PreferredLft: format.Forever}, 0, 0, 0, "0.0.0.0"},
		{"ipv4 recorded broadcast", format.Addr{CIDR: "10.201.0.2/24", Broadcast: "10.201.0.255"}, 0, 0, 0, "10.201.0.255"},
		{"ipv4 finite", format.Addr{CIDR: "10.201.0.2/24", ValidLft: 600, PreferredLft: 300}, 0, 600, 300, "0.0.0.0"},
		{"ipv4 deprecated", format.Addr{CIDR: "10.201.0.2/24", ValidLft: 600, PreferredLft: 0}, 0, 600, 0, "0.0.0.0"},
		{"unset lifetimes", format.Addr{CIDR: "10.201.0.2/24"}, 0, 0, 0, "0.0.0.0"},
		{"ipv6 gets nodad", format.Addr{CIDR: "fd00:c7::2/64", Flags: []string{"permanent", "tentative"}}, unix.IFA_F_NODAD, 0, 0, ""},
		{"ipv6 optimistic keeps dad", format.Addr{CIDR: "fd00:c7::2/64", Flags: []string{"optimistic", "noprefixroute"}}, unix.IFA_F_OPTIMISTIC | unix.IFA_F_NOPREFIXROUTE, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			na, err := netlinkAddr(tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			if na.Flags != tc.flags || na.ValidLft != tc.valid || na.PreferedLft != tc.pref {
				t.Errorf("flags %#x lifetimes %d/%d, want %#x %d/%d", na.Flags, na.ValidLft, na.PreferedLft, tc.flags, tc.valid, tc.pref)
			}
			if got := ipString(na.Broadcast); got != tc.broadcast {
				t.Errorf("broadcast %q, want %q", got, tc.broadcast)
			}
			if got := prefixString(na.IPNet); got != tc.addr.CIDR {
				t.Errorf("address %s, want %s", got, tc.addr.CIDR)
			}
		})
	}
}

func TestRouteOrder(t *testing.T) {
	routes := []format.Route{
		{Type: "unicast", Gateway: "10.201.1.1"},
		{Type: "unicast", Dst: "10.201.10.0/24", Gateway: "10.201.1.1"},
		{Type: "unicast", Dst: "10.201.1.0/24", Link: "eth0"},
		{Type: "blackhole", Dst: "10.201.99.0/24"},
	}
	slices.SortStableFunc(routes, func(a, b format.Route) int { return routeRank(a) - routeRank(b) })
	var got []string
	for _, r := range routes {
		got = append(got, r.String())
	}
	want := []string{"blackhole 10.201.99.0/24", "10.201.1.0/24 dev eth0", "10.201.10.0/24 via 10.201.1.1", "default via 10.201.1.1"}
	if !slices.Equal(got, want) {
		t.Errorf("order = %q, want %q", got, want)
	}
}
