package network

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
)

// PortsPrefix starts the name of the nftables table (inet family, in
// crtool's own network namespace) that publishes one restored container's
// ports; the rest of the name is the container's.
const PortsPrefix = "crtool-ports-"

// OwnNetns is crtool's own network namespace as a path, which the
// guardian (a process of the same namespace) reads the same way.
const OwnNetns = "/proc/self/ns/net"

// Ports is a published-ports table in the host's network namespace.
type Ports struct {
	Table string `json:"table"`
}

// PortsTable names the table of the container called name.
func PortsTable(name string) string { return PortsPrefix + name }

// Publish forwards each mapping's host port to ctrIP in a new table named
// table, as netavark does with iptables: DNAT in prerouting (connections
// from outside) and in output (from the host itself, 127.0.0.1 included),
// and a masquerade of connections from 127.0.0.0/8, whose replies could not
// come back otherwise. The bridge the container hangs on gets
// route_localnet, without which the kernel drops packets from 127.0.0.1
// leaving through it. A table of that name must not exist yet.
func Publish(table string, ctrIP net.IP, bridge string, ports []format.PortMapping) (*Ports, error) {
	ip4 := ctrIP.To4()
	if ip4 == nil {
		return nil, fmt.Errorf("publish ports: container address %s is not IPv4", ctrIP)
	}
	if bridge != "" {
		if err := routeLocalnet(bridge); err != nil {
			return nil, fmt.Errorf("publish ports: route_localnet on bridge %s: %w", bridge, err)
		}
	}
	err := withConn(OwnNetns, func(c *nftables.Conn) error {
		if t, err := findTable(c, table); err != nil {
			return err
		} else if t != nil {
			return errdefs.Newf(errdefs.ErrConflict, "nftables table inet %s exists: a container of that name publishes ports already", table)
		}
		t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: table})
		pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
		out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
		post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		for _, m := range ports {
			dnat, err := dnatRule(m, ip4)
			if err != nil {
				return err
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: dnat})
			c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: dnat})
			c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: localMasquerade(m, ip4)})
		}
		return c.Flush()
	})
	if err != nil {
		return nil, fmt.Errorf("publish ports: %w", err)
	}
	return &Ports{Table: table}, nil
}

// Remove deletes the table; one already gone counts as removed.
func (p *Ports) Remove() error {
	if p == nil {
		return nil
	}
	if err := DeleteTable(OwnNetns, p.Table); err != nil {
		return fmt.Errorf("remove published ports (table inet %s): %w", p.Table, errors.Unwrap(err))
	}
	return nil
}

// CheckPortsFree reports, all at once, the mappings whose host port a
// socket on this host holds: a restore would send their connections to
// the container behind that socket's back.
func CheckPortsFree(ports []format.PortMapping) error {
	var errs []error
	for _, m := range ports {
		addr := net.JoinHostPort(m.HostIP, strconv.Itoa(m.HostPort))
		var err error
		if m.Protocol == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp4", addr); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp4", addr); err == nil {
				l.Close()
			}
		}
		if errors.Is(err, unix.EADDRINUSE) {
			errs = append(errs, errdefs.Newf(errdefs.ErrConflict, "host port %d/%s of the container is in use on this host", m.HostPort, m.Protocol))
		} else if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("host port %d/%s: %w", m.HostPort, m.Protocol, err))
		}
	}
	return errors.Join(errs...)
}

// dnatRule matches IPv4 connections of m's protocol to m's host port on a
// local address (m's host address, when set) and sends them to ip.
func dnatRule(m format.PortMapping, ip net.IP) ([]expr.Any, error) {
	proto := byte(unix.IPPROTO_TCP)
	if m.Protocol == "udp" {
		proto = unix.IPPROTO_UDP
	}
	ex := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
	if m.HostIP != "" {
		hip := net.ParseIP(m.HostIP).To4()
		if hip == nil {
			return nil, errdefs.Newf(errdefs.ErrUsage, "port mapping %s: host address is not IPv4", m)
		}
		ex = append(ex,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: hip})
	}
	ex = append(ex,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(m.HostPort))},
		&expr.Immediate{Register: 1, Data: ip},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(uint16(m.ContainerPort))},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
	return ex, nil
}

// localMasquerade masquerades connections from 127.0.0.0/8 to ip's
// container port of m: after the output chain's DNAT they leave through
// the bridge, and the container must answer the bridge's address.
func localMasquerade(m format.PortMapping, ip net.IP) []expr.Any {
	proto := byte(unix.IPPROTO_TCP)
	if m.Protocol == "udp" {
		proto = unix.IPPROTO_UDP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 0}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(m.ContainerPort))},
		&expr.Masq{},
	}
}

// routeLocalnet lets packets from 127.0.0.0/8 leave through bridge (in
// crtool's own namespace).
func routeLocalnet(bridge string) error {
	root, err := openSysctlRoot(sysctlRoot)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	// Dots in an interface name are slashes in a sysctl key.
	return writeSysctlAt(root, "net.ipv4.conf."+strings.ReplaceAll(bridge, ".", "/")+".route_localnet", "1")
}
