package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQuiesceResume(t *testing.T) {
	e := newEnv(t)
	ns, path := e.netns("q")
	other, _ := e.netns("o")
	e.ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", other)
	e.ipScript(ns, `
		link set lo up
		addr add 10.201.14.2/24 dev eth0
		addr add fd00:c7:14::2/64 dev eth0 nodad
		link set eth0 up
		route add default via 10.201.14.1
		route add 10.201.99.0/24 via 10.201.14.1 table 100
		-6 route add fd00:c7:99::/64 via fd00:c7:14::1`)
	e.ip(other, "link", "set", "eth0", "up")
	before, err := Capture(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := Quiesce(path, before); err != nil {
		t.Fatal(err)
	}
	during, err := Capture(path)
	if err != nil {
		t.Fatal(err)
	}
	if l := during.LinkByName("eth0"); l == nil || containsFlag(l.Flags, "up") {
		t.Fatalf("eth0 after Quiesce: %+v", l)
	}
	for _, cidr := range []string{"10.201.14.2/24", "fd00:c7:14::2/64"} {
		if findAddr(during, "eth0", cidr) == nil {
			t.Errorf("address %s lost while quiesced", cidr)
		}
	}
	if len(routeStrings(during)) >= len(routeStrings(before)) {
		t.Errorf("routes through the down link remain: %v", routeStrings(during))
	}
	if err := Resume(path, before); err != nil {
		t.Fatal(err)
	}
	after, err := Capture(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(before, after); len(d) > 0 {
		t.Fatalf("after Resume:\n%s", strings.Join(d, "\n"))
	}
	// Resuming twice changes nothing and fails on nothing.
	if err := Resume(path, before); err != nil {
		t.Fatal(err)
	}
	inside(t, path, func() {
		b, _ := os.ReadFile(filepath.Join("/proc/sys/net/ipv6/conf/eth0/keep_addr_on_down"))
		if strings.TrimSpace(string(b)) != "0" {
			t.Errorf("keep_addr_on_down = %q after Resume, want the default 0", b)
		}
	})
}

func containsFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

func TestAddressesOf(t *testing.T) {
	e := newEnv(t)
	ns, path := e.netns("a")
	e.ipScript(ns, `
		link set lo up
		link add d0 type veth peer name d1
		addr add 10.201.15.2/24 dev d0
		addr add fd00:c7:15::2/64 dev d0 nodad`)
	got, err := AddressesOf(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"127.0.0.1/8": false, "10.201.15.2/24": false, "fd00:c7:15::2/64": false}
	for _, a := range got {
		if _, ok := want[a]; ok {
			want[a] = true
		}
	}
	for a, seen := range want {
		if !seen {
			t.Errorf("AddressesOf lacks %s: %v", a, got)
		}
	}
}
