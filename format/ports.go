package format

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// PortMapping is a published port: connections to HostPort on the host (on
// HostIP, or any local address when empty) go to ContainerPort of the
// container's address.
type PortMapping struct {
	HostIP        string `json:"hostIP,omitempty"`
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"` // tcp or udp
}

// String formats m the way Podman's --publish takes it.
func (m PortMapping) String() string {
	s := fmt.Sprintf("%d:%d/%s", m.HostPort, m.ContainerPort, m.Protocol)
	if m.HostIP != "" {
		s = m.HostIP + ":" + s
	}
	return s
}

// ParsePortMapping reads Podman's --publish syntax:
// [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]. Ranges and a missing host
// port (a random one) are not supported: a restore must reproduce exactly
// the mapping the container's clients use.
func ParsePortMapping(s string) (PortMapping, error) {
	m := PortMapping{Protocol: "tcp"}
	spec, proto, ok := strings.Cut(s, "/")
	if ok {
		m.Protocol = proto
	}
	if m.Protocol != "tcp" && m.Protocol != "udp" {
		return m, fmt.Errorf("port mapping %q: protocol %q is neither tcp nor udp", s, m.Protocol)
	}
	i := strings.LastIndex(spec, ":")
	if i < 0 {
		return m, fmt.Errorf("port mapping %q: give HOSTPORT:CONTAINERPORT", s)
	}
	host, ctr := spec[:i], spec[i+1:]
	if j := strings.LastIndex(host, ":"); j >= 0 {
		m.HostIP = strings.Trim(host[:j], "[]")
		host = host[j+1:]
		if ip := net.ParseIP(m.HostIP); ip == nil || ip.To4() == nil {
			return m, fmt.Errorf("port mapping %q: host address %q is not an IPv4 address", s, m.HostIP)
		}
	}
	var err error
	if m.HostPort, err = parsePort(host); err != nil {
		return m, fmt.Errorf("port mapping %q: host port: %w", s, err)
	}
	if m.ContainerPort, err = parsePort(ctr); err != nil {
		return m, fmt.Errorf("port mapping %q: container port: %w", s, err)
	}
	return m, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

// MergePorts adds extra to ports; a mapping of extra replaces one of ports
// with the same host port and protocol.
func MergePorts(ports, extra []PortMapping) []PortMapping {
	var out []PortMapping
	for _, p := range ports {
		replaced := false
		for _, e := range extra {
			replaced = replaced || e.HostPort == p.HostPort && e.Protocol == p.Protocol
		}
		if !replaced {
			out = append(out, p)
		}
	}
	return append(out, extra...)
}

// PortsFromPodman expands config.dump's port mappings, one per port and
// protocol.
func PortsFromPodman(pms []PodmanPortMapping) []PortMapping {
	var out []PortMapping
	for _, pm := range pms {
		n := max(int(pm.Range), 1)
		for _, proto := range strings.Split(pm.Protocol, ",") {
			if proto == "" {
				proto = "tcp"
			}
			for i := 0; i < n; i++ {
				out = append(out, PortMapping{HostIP: pm.HostIP, HostPort: int(pm.HostPort) + i, ContainerPort: int(pm.ContainerPort) + i, Protocol: proto})
			}
		}
	}
	return out
}

// PortsToPodman writes ports as config.dump records them.
func PortsToPodman(ports []PortMapping) []PodmanPortMapping {
	var out []PodmanPortMapping
	for _, p := range ports {
		out = append(out, PodmanPortMapping{HostIP: p.HostIP, ContainerPort: uint16(p.ContainerPort), HostPort: uint16(p.HostPort), Range: 1, Protocol: p.Protocol})
	}
	return out
}
