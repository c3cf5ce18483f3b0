package network

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/crtool/crtool/format"
)

// TestHostPeer covers a veth whose peer is in crtool's own namespace, on a
// host bridge: Capture names the namespace "host", Check finds the original
// namespace on that bridge, and Replay attaches a new peer to it.
func TestHostPeer(t *testing.T) {
	e := newEnv(t)
	src, srcPath := e.netns("hs")
	_, dstPath := e.netns("hd")
	br, peer, newPeer := e.name("br"), e.name("p"), e.name("q")
	// Registered after the namespaces, so they run first: removing the
	// namespaces alone would take the host ends down only asynchronously.
	e.hostLink(br)
	e.hostLink(peer)
	e.hostLink(newPeer)
	e.ip("", "link", "add", br, "type", "bridge")
	e.ip("", "addr", "add", "10.201.12.1/24", "dev", br)
	e.ip("", "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", src)
	e.ip("", "link", "set", peer, "master", br, "up")
	e.ipScript(src, `
		addr add 10.201.12.2/24 dev eth0
		link set eth0 up`)

	cfg, err := Capture(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	eth0 := cfg.LinkByName("eth0")
	if eth0 == nil || eth0.Peer == nil || !reflect.DeepEqual(*eth0.Peer, format.Peer{Name: peer, Netns: format.HostNetns, MAC: eth0.Peer.MAC, MTU: 1500, Master: br, MasterAddrs: []string{"10.201.12.1/24"}, MasterMTU: 1500}) {
		t.Fatalf("eth0 = %+v, want peer %s on host bridge %s", eth0, peer, br)
	}

	opts := ReplayOptions{PeerName: newPeer}
	err = Check(cfg, opts)
	if !errors.Is(err, ErrAddressInUse) || !strings.Contains(err.Error(), srcPath) {
		t.Fatalf("Check = %v, want 10.201.12.2 in use in %s", err, srcPath)
	}

	cfg.Addrs = []format.Addr{{Link: "eth0", CIDR: "10.201.12.3/24", Scope: "global"}}
	if err := Check(cfg, opts); err != nil {
		t.Fatal(err)
	}
	if err := Replay(dstPath, cfg, opts, nil); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(newPeer)
	if err != nil {
		t.Fatalf("new peer: %v", err)
	}
	b, _ := netlink.LinkByName(br)
	if b == nil || l.Attrs().MasterIndex != b.Attrs().Index {
		t.Errorf("new peer %s is not on bridge %s", newPeer, br)
	}
}
