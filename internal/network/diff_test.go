package network

import (
	"slices"
	"testing"

	"github.com/crtool/crtool/format"
)

func TestDiff(t *testing.T) {
	base := func() *format.Config {
		return &format.Config{
			Links: []format.Link{
				{Name: "lo", Kind: format.KindLoopback, MTU: 65536, Flags: []string{"up", "loopback"}, Index: 1},
				{Name: "eth0", Kind: format.KindVeth, MAC: "02:c7:00:00:00:01", MTU: 1500, Flags: []string{"up", "multicast"}, Index: 7,
					Peer: &format.Peer{Name: "veth1", Netns: format.HostNetns, MAC: "02:00:00:00:00:09", MTU: 1500, Master: "br0"}},
			},
			Addrs: []format.Addr{
				{Link: "lo", CIDR: "127.0.0.1/8", Scope: "host", ValidLft: format.Forever, PreferredLft: format.Forever, Auto: true},
				{Link: "eth0", CIDR: "10.201.0.2/24", Scope: "global", ValidLft: format.Forever, PreferredLft: format.Forever},
				{Link: "eth0", CIDR: "10.201.0.3/24", Scope: "global", ValidLft: 500, PreferredLft: 100},
				{Link: "eth0", CIDR: "fd00:c7::2/64", Scope: "global", Flags: []string{"tentative", "permanent"}},
				{Link: "eth0", CIDR: "fe80::c7:ff:fe00:1/64", Scope: "link", Auto: true},
			},
			Routes:  []format.Route{{Family: "inet", Table: 254, Type: "unicast", Gateway: "10.201.0.1", Link: "eth0"}},
			Sysctls: map[string]string{"net.ipv4.ip_forward": "1"},
			Sockets: []format.Socket{{Proto: "tcp", Family: "inet", State: "LISTEN", Local: "0.0.0.0:80", Inode: 1234}},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(c *format.Config)
		want   []string
	}{
		{"same", func(c *format.Config) {}, nil},
		{"kernel-assigned values", func(c *format.Config) {
			c.Links[1].Index = 3
			c.Links[1].Flags = []string{"multicast", "up"}
			c.Links[1].Peer = &format.Peer{Name: "vd", Netns: "/run/netns/other", MTU: 1500}
			c.Addrs[2].ValidLft, c.Addrs[2].PreferredLft = 20, 10
			c.Addrs[3].Flags = []string{"permanent", "nodad"}
			c.Addrs = c.Addrs[:4] // no auto link-local yet
			c.Sockets = nil
			c.Unsupported = []string{"x"}
		}, nil},
		{"mtu", func(c *format.Config) { c.Links[1].MTU = 1400 }, []string{"link eth0: mtu 1500 != 1400"}},
		{"link missing", func(c *format.Config) { c.Links = c.Links[:1] }, []string{"link eth0: only in the first"}},
		{"lo lost 127.0.0.1", func(c *format.Config) { c.Addrs = c.Addrs[1:] }, []string{"address lo 127.0.0.1/8: only in the first"}},
		{"lifetime became forever", func(c *format.Config) { c.Addrs[2].ValidLft = format.Forever },
			[]string{"address eth0 10.201.0.3/24: valid_lft 1 != 4294967295"}},
		{"gateway", func(c *format.Config) { c.Routes[0].Gateway = "10.201.0.254" },
			[]string{`route unicast default table 254 metric 0 (inet): gateway "10.201.0.1" != "10.201.0.254"`}},
		{"extra route", func(c *format.Config) {
			c.Routes = append(c.Routes, format.Route{Family: "inet", Table: 100, Type: "unicast", Gateway: "10.201.0.1"})
		},
			[]string{"route unicast default table 100 metric 0 (inet): only in the second"}},
		{"sysctls", func(c *format.Config) {
			c.Sysctls = map[string]string{"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "1"}
		},
			[]string{`sysctl net.ipv4.ip_forward: "1" != "0"`, `sysctl net.ipv6.conf.all.forwarding: default != "1"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := base()
			tc.change(b)
			if got := Diff(base(), b); !slices.Equal(got, tc.want) {
				t.Errorf("Diff =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
