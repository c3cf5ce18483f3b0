package restore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"

	"github.com/vishvananda/netlink"

	"github.com/crtool/crtool/format"
)

// recreatableBridges are the recorded bridges, missing in the host's
// namespace, that a rebuild may create by itself: the archive records
// their addresses (crtool wrote it), so each comes back as the network's
// owner had it, gateway included. If one missing bridge lacks them, none
// is created without --create-bridge; --bridge names a bridge of the
// user's, created only with --create-bridge.
func recreatableBridges(md *format.Metadata, o Options) []*format.Peer {
	if o.Bridge != "" || o.PeerNetns != "" || md.Network == nil {
		return nil
	}
	var out []*format.Peer
	for _, l := range md.Network.Links {
		p := l.Peer
		if l.Kind != format.KindVeth || p == nil || p.Master == "" || p.Netns != format.HostNetns {
			continue
		}
		if _, err := netlink.LinkByName(p.Master); !errors.As(err, &netlink.LinkNotFoundError{}) {
			continue
		}
		if len(p.MasterAddrs) == 0 {
			return nil
		}
		out = append(out, p)
	}
	return out
}

// freshPeerName names the host end of the container's veth anew when the
// recorded name is taken in this host's namespace: engines number their
// host ends (netavark's veth0, veth1...), and another container may hold
// the number now. The name matters to no one inside the container. It
// returns "" to keep the recorded name.
func freshPeerName(md *format.Metadata, o Options) string {
	if md.Network == nil || o.PeerNetns != "" {
		return ""
	}
	var out []format.Link
	for _, l := range md.Network.Links {
		if l.Kind == format.KindVeth && (l.Peer == nil || l.Peer.Netns != format.SelfNetns) {
			out = append(out, l)
		}
	}
	if len(out) != 1 || out[0].Peer == nil || out[0].Peer.Netns != format.HostNetns || out[0].Peer.Name == "" {
		return ""
	}
	if _, err := netlink.LinkByName(out[0].Peer.Name); err != nil {
		return ""
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "veth" + hex.EncodeToString(b)
}
