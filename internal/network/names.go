package network

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The names below follow iproute2, so a Config reads like `ip` output.

type flagName struct {
	bit  uint32
	name string
}

var linkFlagNames = []flagName{
	{unix.IFF_UP, "up"},
	{unix.IFF_BROADCAST, "broadcast"},
	{unix.IFF_LOOPBACK, "loopback"},
	{unix.IFF_POINTOPOINT, "pointopoint"},
	{unix.IFF_NOARP, "noarp"},
	{unix.IFF_PROMISC, "promisc"},
	{unix.IFF_ALLMULTI, "allmulti"},
	{unix.IFF_MULTICAST, "multicast"},
}

// Bit 0x01 means "secondary" for IPv4 and "temporary" for IPv6.
var addrFlagNames = []flagName{
	{unix.IFA_F_NODAD, "nodad"},
	{unix.IFA_F_OPTIMISTIC, "optimistic"},
	{unix.IFA_F_DADFAILED, "dadfailed"},
	{unix.IFA_F_HOMEADDRESS, "home"},
	{unix.IFA_F_DEPRECATED, "deprecated"},
	{unix.IFA_F_TENTATIVE, "tentative"},
	{unix.IFA_F_PERMANENT, "permanent"},
	{unix.IFA_F_MANAGETEMPADDR, "mngtmpaddr"},
	{unix.IFA_F_NOPREFIXROUTE, "noprefixroute"},
	{unix.IFA_F_MCAUTOJOIN, "autojoin"},
	{unix.IFA_F_STABLE_PRIVACY, "stable-privacy"},
}

// replayableAddrFlags are the address flags a caller may set; the others
// describe state the kernel derives (DAD progress, lifetimes, ordering).
var replayableAddrFlags = []string{"nodad", "optimistic", "home", "mngtmpaddr", "noprefixroute", "autojoin"}

func flagsToNames(v uint32, table []flagName) []string {
	var out []string
	for _, f := range table {
		if v&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return out
}

func namesToFlags(names []string, table []flagName) uint32 {
	var v uint32
	for _, f := range table {
		if slices.Contains(names, f.name) {
			v |= f.bit
		}
	}
	return v
}

func addrFlagsToNames(v uint32, v6 bool) []string {
	out := flagsToNames(v, addrFlagNames)
	if v&unix.IFA_F_SECONDARY != 0 {
		if v6 {
			out = append([]string{"temporary"}, out...)
		} else {
			out = append([]string{"secondary"}, out...)
		}
	}
	return out
}

var scopeNames = map[int]string{
	unix.RT_SCOPE_UNIVERSE: "global",
	unix.RT_SCOPE_SITE:     "site",
	unix.RT_SCOPE_LINK:     "link",
	unix.RT_SCOPE_HOST:     "host",
	unix.RT_SCOPE_NOWHERE:  "nowhere",
}

var protoNames = map[int]string{
	unix.RTPROT_UNSPEC:     "unspec",
	unix.RTPROT_REDIRECT:   "redirect",
	unix.RTPROT_KERNEL:     "kernel",
	unix.RTPROT_BOOT:       "boot",
	unix.RTPROT_STATIC:     "static",
	unix.RTPROT_RA:         "ra",
	unix.RTPROT_DHCP:       "dhcp",
	unix.RTPROT_BIRD:       "bird",
	unix.RTPROT_ZEBRA:      "zebra",
	unix.RTPROT_KEEPALIVED: "keepalived",
}

var routeTypeNames = map[int]string{
	unix.RTN_UNICAST:     "unicast",
	unix.RTN_BLACKHOLE:   "blackhole",
	unix.RTN_UNREACHABLE: "unreachable",
	unix.RTN_PROHIBIT:    "prohibit",
	unix.RTN_THROW:       "throw",
}

var macvlanModeNames = map[int]string{
	int(netlink.MACVLAN_MODE_PRIVATE):  "private",
	int(netlink.MACVLAN_MODE_VEPA):     "vepa",
	int(netlink.MACVLAN_MODE_BRIDGE):   "bridge",
	int(netlink.MACVLAN_MODE_PASSTHRU): "passthru",
	int(netlink.MACVLAN_MODE_SOURCE):   "source",
}

// tcpStateNames is indexed by the kernel's TCP_* state numbers.
var tcpStateNames = []string{
	1:  "ESTABLISHED",
	2:  "SYN_SENT",
	3:  "SYN_RECV",
	4:  "FIN_WAIT1",
	5:  "FIN_WAIT2",
	6:  "TIME_WAIT",
	7:  "CLOSE",
	8:  "CLOSE_WAIT",
	9:  "LAST_ACK",
	10: "LISTEN",
	11: "CLOSING",
	12: "NEW_SYN_RECV",
}

func nameOf(m map[int]string, v int) string {
	if s, ok := m[v]; ok {
		return s
	}
	return strconv.Itoa(v)
}

// valueOf reverses nameOf; numbers are accepted for values without a name.
func valueOf(m map[int]string, s string) (int, error) {
	for v, name := range m {
		if name == s {
			return v, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("unknown name %q", s)
	}
	return v, nil
}

func familyName(f int) string {
	switch f {
	case unix.AF_INET:
		return "inet"
	case unix.AF_INET6:
		return "inet6"
	}
	return strconv.Itoa(f)
}

func familyValue(s string) (int, error) {
	switch s {
	case "inet":
		return unix.AF_INET, nil
	case "inet6":
		return unix.AF_INET6, nil
	}
	return 0, fmt.Errorf("unknown address family %q", s)
}

func ipString(ip net.IP) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return ""
	}
	return a.Unmap().String()
}

// prefixString keeps the host part: 10.0.0.2/24, not 10.0.0.0/24.
func prefixString(n *net.IPNet) string {
	if n == nil {
		return ""
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return ""
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).String()
}

// parseIPNet turns a CIDR into the address-with-mask form netlink expects,
// keeping the host part.
func parseIPNet(s string) (*net.IPNet, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, err
	}
	a := p.Addr()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}, nil
}

func parseIP(s string) (net.IP, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, err
	}
	return net.IP(a.AsSlice()), nil
}
