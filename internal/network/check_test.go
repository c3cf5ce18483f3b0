package network

import (
	"errors"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
)

// vethConfig is a namespace with one veth, eth0, and the given addresses.
func vethConfig(peer format.Peer, cidrs ...string) *format.Config {
	cfg := &format.Config{
		Links: []format.Link{
			{Name: "lo", Kind: format.KindLoopback, MTU: 65536, Flags: []string{"up", "loopback"}},
			{Name: "eth0", Kind: format.KindVeth, MAC: "02:c7:00:00:05:01", MTU: 1500, Flags: []string{"up", "broadcast", "multicast"}, Peer: &peer},
		},
		Addrs:  []format.Addr{{Link: "lo", CIDR: "127.0.0.1/8", Scope: "host", Auto: true}},
		Routes: []format.Route{},
	}
	for _, c := range cidrs {
		cfg.Addrs = append(cfg.Addrs, format.Addr{Link: "eth0", CIDR: c, Scope: "global", ValidLft: format.Forever, PreferredLft: format.Forever})
	}
	return cfg
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	hub, hubPath := e.netns("hub")
	other, otherPath := e.netns("x")
	apart, _ := e.netns("y")
	hostBr := e.name("hb")
	e.hostLink(hostBr)
	// other sits on br0, apart on br1 of the same hub; the host has an
	// address on a test bridge (down, so it routes nothing).
	e.ipScript(hub, `
		link add br0 type bridge
		link add br1 type bridge
		addr add 10.201.5.1/24 dev br0
		link set br0 up
		link set br1 up`)
	e.ipScript(other, `
		link add eth0 type veth peer name vx netns `+hub+`
		addr add 10.201.5.2/24 dev eth0
		addr add fd00:c7:5::2/64 dev eth0 nodad
		link set eth0 up`)
	e.ipScript(apart, `
		link add eth0 type veth peer name vy netns `+hub+`
		addr add 10.201.6.2/24 dev eth0
		link set eth0 up`)
	e.ip(hub, "link", "set", "vx", "master", "br0", "up")
	e.ip(hub, "link", "set", "vy", "master", "br1", "up")
	e.ip("", "link", "add", hostBr, "type", "bridge")
	e.ip("", "addr", "add", "10.201.7.1/24", "dev", hostBr)

	onBr0 := ReplayOptions{PeerNetns: hubPath, Bridge: "br0", PeerName: "vnew"}
	for _, tc := range []struct {
		name  string
		cfg   *format.Config
		opts  ReplayOptions
		want  error
		words []string // in the message
	}{
		{"free", vethConfig(format.Peer{}, "10.201.5.3/24", "fd00:c7:5::3/64"), onBr0, nil, nil},
		{"ipv4 in use on the same bridge", vethConfig(format.Peer{}, "10.201.5.2/24"), onBr0, ErrAddressInUse, []string{"10.201.5.2", otherPath}},
		{"ipv6 in use on the same bridge", vethConfig(format.Peer{}, "fd00:c7:5::2/64"), onBr0, ErrAddressInUse, []string{"fd00:c7:5::2", otherPath}},
		{"in use in the peer namespace", vethConfig(format.Peer{}, "10.201.5.1/24"), onBr0, ErrAddressInUse, []string{"10.201.5.1", hubPath}},
		{"in use in the host namespace", vethConfig(format.Peer{}, "10.201.7.1/24"), onBr0, ErrAddressInUse, []string{"10.201.7.1", "host namespace", hostBr}},
		{"in use on another bridge", vethConfig(format.Peer{}, "10.201.6.2/24"), onBr0, nil, nil},
		{"recorded peer and bridge", vethConfig(format.Peer{Name: "vnew", Netns: hubPath, Master: "br0"}, "10.201.5.2/24"), ReplayOptions{}, ErrAddressInUse, []string{"10.201.5.2"}},
		{"missing bridge", vethConfig(format.Peer{}, "10.201.5.3/24"), ReplayOptions{PeerNetns: hubPath, Bridge: "nobr"}, ErrBridgeMissing, []string{"nobr", "CreateBridge"}},
		{"missing bridge to create", vethConfig(format.Peer{}, "10.201.5.3/24"), ReplayOptions{PeerNetns: hubPath, Bridge: "nobr", CreateBridge: true}, nil, nil},
		{"peer name taken", vethConfig(format.Peer{}, "10.201.5.3/24"), ReplayOptions{PeerNetns: hubPath, Bridge: "br0", PeerName: "vx"}, ErrPeerExists, []string{"vx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.cfg, tc.opts)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestCheckNeedsPeerNamespace(t *testing.T) {
	// A peer namespace Capture could not find must come from the options.
	err := Check(vethConfig(format.Peer{Name: "v"}, "10.201.5.3/24"), ReplayOptions{})
	if err == nil || !strings.Contains(err.Error(), "PeerNetns") {
		t.Fatalf("Check = %v, want a hint at ReplayOptions.PeerNetns", err)
	}
}
