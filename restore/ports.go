package restore

import (
	"context"
	"errors"

	"net"
	"strings"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/guardian"
	"github.com/crtool/crtool/internal/network"
)

// checkPorts finds the ports to publish, the recorded ones (Podman's -p;
// not with --netns) and --publish, and checks before anything is made that this host does
// not use them.
func (r *restorer) checkPorts(ctx context.Context) error {
	recorded := r.md.Ports
	if r.opts.Netns != "" && len(recorded) > 0 {
		// The namespace is the user's, its address maybe not the
		// recorded one: only --publish says where ports go.
		r.opts.logf("--netns: not publishing the recorded ports %v (use --publish)", recorded)
		recorded = nil
	}
	ports := format.MergePorts(recorded, r.opts.Publish)
	if len(ports) == 0 {
		return nil
	}
	if r.md.Namespaces["net"].Shared {
		if len(r.opts.Publish) > 0 {
			return errdefs.Hint(errdefs.Newf(errdefs.ErrUsage, "the container shares the host's network, its ports need no publishing"), "drop ", "Publish", "")
		}
		return nil
	}
	if err := network.CheckPortsFree(ports); err != nil {
		return errdefs.Hint(err, "stop what listens there, or map the container's port to another host port with ", "Publish", " HOSTPORT:CONTAINERPORT")
	}
	r.publish = ports
	return nil
}

// preparePorts publishes the ports again. They lead to the container's
// recorded address, through a table of crtool's own that goes when the
// restore fails and stays with the container otherwise.
func (r *restorer) preparePorts(ctx context.Context) error {
	if len(r.publish) == 0 {
		return nil
	}
	ip, err := containerIPv4(r.md.Network)
	if err != nil {
		return err
	}
	pub, err := network.Publish(network.PortsTable(r.name), ip, hostBridge(r.md, r.opts), r.publish)
	if err != nil {
		return err
	}
	r.ports = pub
	if err := r.rollback.PushRecord("remove the published ports", guardian.DeleteTable(network.OwnNetns, pub.Table), pub.Remove); err != nil {
		return err
	}
	var list []string
	for _, p := range r.publish {
		list = append(list, p.String())
	}
	r.opts.logf("published ports %s to %s (nftables table inet %s)", strings.Join(list, ", "), ip, pub.Table)
	return nil
}

// containerIPv4 is the address published ports lead to: the container's
// first global IPv4 address on a link other than lo.
func containerIPv4(cfg *format.Config) (net.IP, error) {
	if cfg != nil {
		for _, a := range cfg.Addrs {
			if a.Link == "lo" || a.Auto || a.Scope != "global" {
				continue
			}
			if ip, _, err := net.ParseCIDR(a.CIDR); err == nil && ip.To4() != nil {
				return ip.To4(), nil
			}
		}
	}
	return nil, errors.New("the archive records no IPv4 address of the container to publish its ports to: restore it with --netns into a namespace of known address, and set up the forwarding yourself")
}

// hostBridge is the bridge in the host's namespace that the container's
// veth hangs on (--bridge, or the recorded one), "" when none.
func hostBridge(md *format.Metadata, o Options) string {
	if md.Network == nil {
		return ""
	}
	for _, l := range md.Network.Links {
		if l.Kind != format.KindVeth || l.Peer == nil {
			continue
		}
		if o.Bridge != "" {
			return o.Bridge
		}
		if l.Peer.Netns == format.HostNetns || l.Peer.Netns == "" {
			return l.Peer.Master
		}
	}
	return ""
}
