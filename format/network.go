package format

import (
	"cmp"
	"fmt"
	"math"
	"strings"
)

// Config is what Capture records of one network namespace. crtool stores it as
// JSON in the checkpoint archive, so field names and their meaning are stable.
type Config struct {
	Links     []Link     `json:"links"`
	Addrs     []Addr     `json:"addresses"`
	Routes    []Route    `json:"routes"`
	Rules     []Rule     `json:"rules,omitempty"`
	Neighbors []Neighbor `json:"neighbors,omitempty"`
	// Sysctls holds the net.ipv4.* and net.ipv6.* values that differ from a
	// freshly created namespace, in sysctl(8) notation: an interface name
	// containing dots has them written as slashes ("net.ipv4.conf.eth0/100.forwarding").
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Unsupported lists, human readable, what Capture saw but could not
	// record or what Replay will not recreate.
	Unsupported []string `json:"unsupported,omitempty"`
	// Sockets is the TCP/UDP inventory at capture time. Replay ignores it
	// (CRIU restores sockets); it serves inspection and verification.
	Sockets []Socket `json:"sockets,omitempty"`
}

// Link kinds recorded in Link.Kind.
const (
	KindLoopback = "loopback"
	// KindDevice is a link without a software driver kind, such as a
	// physical NIC or SR-IOV function moved into the namespace. Replay cannot
	// create one.
	KindDevice  = "device"
	KindVeth    = "veth"
	KindBridge  = "bridge"
	KindDummy   = "dummy"
	KindVlan    = "vlan"
	KindMacvlan = "macvlan"
	// KindOther is any other driver (vxlan, wireguard, ...); Link.Driver
	// names it. Replay skips it.
	KindOther = "other"
)

// Namespace names used where a path is expected (Peer.Netns, Parent.Netns,
// ReplayOptions.PeerNetns).
const (
	// HostNetns is crtool's own network namespace.
	HostNetns = "host"
	// SelfNetns is the captured namespace itself: both ends of the veth
	// pair live inside it.
	SelfNetns = "self"
)

// Link is a network interface inside the namespace.
type Link struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Driver is the kernel's link kind for KindOther (e.g. "vxlan").
	Driver string `json:"driver,omitempty"`
	MAC    string `json:"mac,omitempty"`
	MTU    int    `json:"mtu,omitempty"`
	// Flags uses iproute2's lowercase names: up, broadcast, loopback,
	// pointopoint, noarp, promisc, allmulti, multicast.
	Flags []string `json:"flags,omitempty"`
	// Index is the ifindex at capture time, for reference only: Replay
	// cannot choose indexes and everything else refers to links by name.
	Index int `json:"index,omitempty"`
	// Master is the bridge inside the namespace this link is enslaved to.
	Master string `json:"master,omitempty"`
	// Peer is set for veth links.
	Peer *Peer `json:"peer,omitempty"`
	// Parent is set for vlan and macvlan links.
	Parent *Parent `json:"parent,omitempty"`
	VlanID int     `json:"vlan_id,omitempty"`
	// MacvlanMode is private, vepa, bridge, passthru or source.
	MacvlanMode string `json:"macvlan_mode,omitempty"`
}

// Peer is the other end of a veth pair.
type Peer struct {
	Name string `json:"name"`
	// Netns is HostNetns, SelfNetns, a path (/run/netns/NAME), or empty
	// when Capture could not find the namespace.
	Netns string `json:"netns,omitempty"`
	MAC   string `json:"mac,omitempty"`
	MTU   int    `json:"mtu,omitempty"`
	// Master is the bridge the peer is attached to, in the peer's namespace.
	Master string `json:"master,omitempty"`
	// MasterAddrs (CIDRs) and MasterMTU describe that bridge, so a restore
	// on a host where it is gone can create it as the network's owner
	// (netavark, CNI) had it: the container's gateway is on it.
	MasterAddrs []string `json:"masterAddresses,omitempty"`
	MasterMTU   int      `json:"masterMTU,omitempty"`
}

// Parent is the lower device of a vlan or macvlan link.
type Parent struct {
	Name string `json:"name"`
	// Netns is as in Peer.Netns; SelfNetns when the parent is in the namespace.
	Netns string `json:"netns,omitempty"`
}

// Forever is the address lifetime that never expires, as the kernel and
// `ip -j addr` report it.
const Forever = math.MaxUint32

// Addr is an IPv4 or IPv6 address on a link.
type Addr struct {
	Link string `json:"link"`
	// CIDR is the local address with its prefix length ("10.201.0.2/24").
	CIDR string `json:"cidr"`
	// Peer is the remote end of a point-to-point address, as a CIDR.
	Peer      string `json:"peer,omitempty"`
	Broadcast string `json:"broadcast,omitempty"`
	// Scope is global, site, link, host or nowhere.
	Scope string `json:"scope"`
	// Flags uses iproute2's names (nodad, noprefixroute, mngtmpaddr,
	// permanent, secondary, temporary, tentative, deprecated, ...).
	Flags []string `json:"flags,omitempty"`
	// ValidLft and PreferredLft are the remaining lifetimes in seconds at
	// capture time; Forever means no expiry. Replay treats 0 as Forever,
	// except a PreferredLft of 0 under a finite ValidLft (a deprecated address).
	ValidLft     uint32 `json:"valid_lft"`
	PreferredLft uint32 `json:"preferred_lft"`
	// Label is the IPv4 alias label, recorded only when it differs from the
	// link name.
	Label string `json:"label,omitempty"`
	// Auto marks addresses the kernel creates by itself (IPv6 link-local
	// addresses derived from the MAC, 127.0.0.1/8 and ::1 on lo). Replay
	// leaves them to the kernel.
	Auto bool `json:"auto,omitempty"`
}

// Route is a route Capture recorded; kernel-made routes are left out.
type Route struct {
	// Family is inet or inet6.
	Family string `json:"family"`
	// Table is the routing table id (main is 254).
	Table int `json:"table"`
	// Type is unicast, blackhole, unreachable, prohibit or throw.
	Type string `json:"type"`
	// Dst is the destination CIDR; empty means the default route.
	Dst     string `json:"dst,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	Link    string `json:"link,omitempty"`
	Src     string `json:"src,omitempty"`
	// Scope is global, site, link, host or nowhere.
	Scope string `json:"scope"`
	// Protocol is the route's origin as iproute2 names it (boot, static,
	// dhcp, ...) or a number.
	Protocol string `json:"protocol"`
	// Priority is the metric.
	Priority int  `json:"priority,omitempty"`
	Onlink   bool `json:"onlink,omitempty"`
	MTU      int  `json:"mtu,omitempty"`
}

// Rule is a policy routing rule other than the kernel's default ones.
type Rule struct {
	Family   string `json:"family"`
	Priority int    `json:"priority"`
	Table    int    `json:"table"`
	Src      string `json:"src,omitempty"`
	Dst      string `json:"dst,omitempty"`
	Iif      string `json:"iif,omitempty"`
	Oif      string `json:"oif,omitempty"`
	Fwmark   uint32 `json:"fwmark,omitempty"`
	Fwmask   uint32 `json:"fwmask,omitempty"`
	Invert   bool   `json:"invert,omitempty"`
	// Protocol is the rule's origin (boot, static, ...), empty when unset.
	Protocol string `json:"protocol,omitempty"`
}

// Neighbor is a static (permanent) ARP or NDP entry.
type Neighbor struct {
	Link string `json:"link"`
	IP   string `json:"ip"`
	MAC  string `json:"mac"`
	// State is always "permanent": dynamic entries are not recorded.
	State string `json:"state"`
}

// Socket is one TCP or UDP socket as sock_diag reports it.
type Socket struct {
	// Proto is tcp or udp.
	Proto string `json:"proto"`
	// Family is inet or inet6.
	Family string `json:"family"`
	// State uses the kernel's TCP state names (ESTABLISHED, LISTEN, ...);
	// an unconnected UDP socket is UNCONN, a connected one ESTABLISHED.
	State  string `json:"state"`
	Local  string `json:"local"`
	Remote string `json:"remote,omitempty"`
	Inode  uint32 `json:"inode"`
	UID    uint32 `json:"uid"`
}

// mainTable is the id of the main routing table.
const mainTable = 254

// String formats the route like `ip route`, for messages.
func (r Route) String() string {
	var b strings.Builder
	if r.Type != "" && r.Type != "unicast" {
		b.WriteString(r.Type + " ")
	}
	b.WriteString(cmp.Or(r.Dst, "default"))
	if r.Gateway != "" {
		b.WriteString(" via " + r.Gateway)
	}
	if r.Link != "" {
		b.WriteString(" dev " + r.Link)
	}
	if r.Table != 0 && r.Table != mainTable {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	if r.Family == "inet6" && r.Dst == "" {
		b.WriteString(" (inet6)")
	}
	if r.Priority != 0 {
		fmt.Fprintf(&b, " metric %d", r.Priority)
	}
	return b.String()
}

// LinkByName returns the link called name, or nil.
func (c *Config) LinkByName(name string) *Link {
	for i := range c.Links {
		if c.Links[i].Name == name {
			return &c.Links[i]
		}
	}
	return nil
}
