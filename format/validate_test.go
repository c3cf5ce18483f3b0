package format

import (
	"strings"
	"testing"
)

func TestCheckSysctlKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"net.ipv4.ip_forward", true},
		{"net.ipv4.conf.all.forwarding", true},
		{"net.ipv4.conf.eth0/100.forwarding", true},
		{"net.ipv6.neigh.eth0.base_reachable_time_ms", true},
		{"net.ipv4.route.gc_timeout", true},
		{"net.core.somaxconn", true},
		// "/" stands for "." in sysctl(8) notation: "//" would be "..".
		{"net.//.//.//.tmp.x.victim", false},
		{"net.ipv4.conf.//.forwarding", false},
		{"net.ipv4.conf./.forwarding", false},
		{"net.ipv4.conf.eth0.x/y", false},
		{"net.ipv4.x/.y", false},
		{"kernel.hostname", false},
		{"kernel.core_pattern", false},
		{"kernel.modprobe", false},
		{"net.netfilter.nf_conntrack_max", false},
		{"net.ipv4", false},
		{"net.ipv4.", false},
		{"net.ipv4..ip_forward", false},
		{"net.ipv4.conf.eth0", false},
		{"net.ipv4.conf.eth0.forwarding.x", false},
		{"net.ipv4.conf.a-very-long-name0.forwarding", false},
		{"net.ipv4.conf.eth 0.forwarding", false},
		{"net.ipv4.a.b.c", false},
	} {
		err := CheckSysctlKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("CheckSysctlKey(%q) = %v, want ok %v", tc.key, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "network.sysctls") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("CheckSysctlKey(%q) = %q: want one line naming network.sysctls", tc.key, err)
		}
	}
}

func TestCheckSysctlValue(t *testing.T) {
	if err := CheckSysctlValue("k", "4096\t87380 6291456"); err != nil {
		t.Error(err)
	}
	for _, v := range []string{"1\n2", "a\x00", strings.Repeat("1", 2000)} {
		if CheckSysctlValue("k", v) == nil {
			t.Errorf("value %q accepted", v)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, n := range []string{"web", "web-1.a_b", "0abc"} {
		if err := CheckName("container.name", n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	// A Podman name that would add options to an overlay mount, and
	// names that are paths.
	for _, n := range []string{",upperdir=.,workdir=..", "", ".", "..", "a/b", "-x", "a b", "a:b", strings.Repeat("a", 254)} {
		if err := CheckName("container.name", n); err == nil {
			t.Errorf("%q accepted", n)
		}
	}
}

func TestCheckCgroupPath(t *testing.T) {
	for _, p := range []string{"/", "/crtool/x", "/machine.slice/a-b.scope"} {
		if err := CheckCgroupPath("cgroups.paths", p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"", "x", "/../../etc", "/a/../../b", "/a/..", "/a/", "/a//b", "/a/./b", "/a\nb"} {
		if err := CheckCgroupPath("cgroups.paths", p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestCheckNetnsPath(t *testing.T) {
	for _, p := range []string{"", "/run/netns/c1"} {
		if err := CheckNetnsPath("namespaces.net.path", p, false); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	if err := CheckNetnsPath("peer", HostNetns, true); err != nil {
		t.Error(err)
	}
	for _, p := range []string{"/proc/self/ns/net", "/proc/1/ns/net", "/run/netns/../../proc/1/ns/net", "/run/netns/a/b", "/run/netns/", "host", "x"} {
		if err := CheckNetnsPath("namespaces.net.path", p, false); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := &Config{
		Links:   []Link{{Name: "eth0", Kind: KindVeth, Peer: &Peer{Name: "veth1", Netns: HostNetns, Master: "br0"}}},
		Sysctls: map[string]string{"net.ipv4.conf.eth0.forwarding": "1"},
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*Config{
		"sysctl":      {Sysctls: map[string]string{"kernel.hostname": "x"}},
		"link":        {Links: []Link{{Name: "../x"}}},
		"peer netns":  {Links: []Link{{Name: "eth0", Peer: &Peer{Name: "v", Netns: "/proc/self/ns/net"}}}},
		"parent name": {Links: []Link{{Name: "eth0", Parent: &Parent{Name: "a b", Netns: SelfNetns}}}},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
