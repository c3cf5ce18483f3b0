package network

import (
	"maps"
	"testing"
)

func TestSysctlPath(t *testing.T) {
	for _, tc := range []struct{ key, path string }{
		{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{"net.ipv4.conf.eth0/100.forwarding", "/proc/sys/net/ipv4/conf/eth0.100/forwarding"},
	} {
		if got := sysctlPath(tc.key); got != tc.path {
			t.Errorf("sysctlPath(%q) = %q, want %q", tc.key, got, tc.path)
		}
		if got := sysctlKeyOf(tc.path); got != tc.key {
			t.Errorf("sysctlKeyOf(%q) = %q, want %q", tc.path, got, tc.key)
		}
	}
}

func TestDiffSysctls(t *testing.T) {
	fresh := map[string]string{
		"net.ipv4.ip_forward":               "0",
		"net.ipv4.conf.all.rp_filter":       "0",
		"net.ipv4.conf.default.rp_filter":   "0",
		"net.ipv4.conf.default.forwarding":  "0",
		"net.ipv4.conf.lo.rp_filter":        "0",
		"net.ipv6.conf.default.accept_ra":   "1",
		"net.ipv6.conf.default.mtu":         "1280",
		"net.ipv6.conf.lo.mtu":              "65536",
		"net.ipv4.conf.default.arp_ignore":  "0",
		"net.ipv4.neigh.default.gc_thresh1": "128",
	}
	for _, tc := range []struct {
		name  string
		cur   map[string]string
		links []string
		want  map[string]string
	}{
		{"nothing changed", map[string]string{
			"net.ipv4.conf.eth0.rp_filter": "0", "net.ipv6.conf.eth0.mtu": "1500", "net.ipv6.conf.lo.mtu": "65536",
		}, []string{"lo", "eth0"}, map[string]string{}},
		// Forwarding is recorded even when the host's defaults match: a
		// new namespace inherits them from a host that may forward.
		{"forwarding is always recorded", map[string]string{
			"net.ipv4.ip_forward": "0", "net.ipv4.conf.eth0.forwarding": "1",
		}, []string{"eth0"}, map[string]string{"net.ipv4.ip_forward": "0", "net.ipv4.conf.eth0.forwarding": "1"}},
		{"global and per link", map[string]string{
			"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.rp_filter": "2", "net.ipv4.conf.eth1.rp_filter": "0",
		}, []string{"eth0", "eth1"}, map[string]string{"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.rp_filter": "2"}},
		{"changed default is written per link too", map[string]string{
			"net.ipv6.conf.default.accept_ra": "0", "net.ipv6.conf.eth0.accept_ra": "1", "net.ipv6.conf.eth1.accept_ra": "0",
		}, []string{"eth0", "eth1"}, map[string]string{
			"net.ipv6.conf.default.accept_ra": "0", "net.ipv6.conf.eth0.accept_ra": "1", "net.ipv6.conf.eth1.accept_ra": "0",
		}},
		{"links not replayed are left out", map[string]string{"net.ipv4.conf.vx0.rp_filter": "2"}, []string{"eth0"}, map[string]string{}},
		{"lo compares with a fresh lo", map[string]string{"net.ipv6.conf.lo.mtu": "65536", "net.ipv4.conf.lo.rp_filter": "1"}, []string{"lo"},
			map[string]string{"net.ipv4.conf.lo.rp_filter": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := diffSysctls(fresh, tc.cur, tc.links); !maps.Equal(got, tc.want) {
				t.Errorf("diffSysctls = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSysctlRank(t *testing.T) {
	for key, want := range map[string]int{
		"net.ipv4.ip_forward":               0,
		"net.ipv4.conf.all.forwarding":      1,
		"net.ipv6.conf.default.accept_ra":   2,
		"net.ipv4.neigh.default.gc_thresh1": 2,
		"net.ipv4.conf.eth0.rp_filter":      3,
	} {
		if got := sysctlRank(key); got != want {
			t.Errorf("sysctlRank(%q) = %d, want %d", key, got, want)
		}
	}
}
