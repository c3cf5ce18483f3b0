package podman

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
)

// testdata/network.status is the file of the reference Podman archive
// nginx-tcp-established-gzip.tar.gz (FORMAT.md 3.3).

func TestNetworkConfig(t *testing.T) {
	status, err := os.ReadFile("testdata/network.status")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := NetworkConfig(status)
	if err != nil {
		t.Fatal(err)
	}
	eth0 := cfg.LinkByName("eth0")
	if eth0 == nil || eth0.Kind != format.KindVeth || eth0.MAC != "32:ea:20:c7:2a:07" {
		t.Fatalf("eth0 = %+v", eth0)
	}
	if lo := cfg.LinkByName("lo"); lo == nil || lo.Kind != format.KindLoopback {
		t.Errorf("lo = %+v", lo)
	}
	if a := addrOf(cfg, "eth0", "10.88.0.17/16"); a == nil || a.Auto || a.Scope != "global" {
		t.Errorf("address = %+v", a)
	}
	want := format.Route{Family: "inet", Table: 254, Type: "unicast", Gateway: "10.88.0.1", Link: "eth0", Scope: "global", Protocol: "static"}
	if len(cfg.Routes) != 1 || cfg.Routes[0] != want {
		t.Errorf("routes = %+v, want %+v", cfg.Routes, want)
	}
	// Replay needs to know where the veth's host end goes.
	if l := cfg.LinkByName("eth0"); l.Peer == nil || l.Peer.Netns != format.HostNetns {
		t.Errorf("eth0's peer = %+v, want one in the host namespace", l.Peer)
	}
}

func TestNetworkConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, status, want string }{
		{"not json", `{"podman":`, "parse podman network status"},
		{"bad mac", `{"n":{"interfaces":{"eth0":{"mac_address":"zz"}}}}`, "mac_address"},
		{"bad ipnet", `{"n":{"interfaces":{"eth0":{"subnets":[{"ipnet":"10.88.0.17"}],"mac_address":"32:ea:20:c7:2a:07"}}}}`, "ipnet"},
		{"bad gateway", `{"n":{"interfaces":{"eth0":{"subnets":[{"ipnet":"10.88.0.17/16","gateway":"x"}],"mac_address":"32:ea:20:c7:2a:07"}}}}`, "gateway"},
		{"interface twice", `{"a":{"interfaces":{"eth0":{"mac_address":""}}},"b":{"interfaces":{"eth0":{"mac_address":""}}}}`, "more than one network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NetworkConfig([]byte(tc.status)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NetworkConfig = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestNetworkStatus(t *testing.T) {
	reference, err := os.ReadFile("testdata/network.status")
	if err != nil {
		t.Fatal(err)
	}
	fromRef, err := NetworkConfig(reference)
	if err != nil {
		t.Fatal(err)
	}
	dual := &format.Config{
		Links: []format.Link{
			{Name: "lo", Kind: format.KindLoopback},
			{Name: "eth0", Kind: format.KindVeth, MAC: "02:c7:00:00:00:01"},
			{Name: "eth1", Kind: format.KindVeth, MAC: "02:c7:00:00:00:02"},
			{Name: "eth2", Kind: format.KindVeth, MAC: "02:c7:00:00:00:03"}, // no global address: left out
		},
		Addrs: []format.Addr{
			{Link: "lo", CIDR: "127.0.0.1/8", Scope: "host", Auto: true},
			{Link: "eth0", CIDR: "10.201.0.5/24", Scope: "global"},
			{Link: "eth0", CIDR: "fd00:c7::5/64", Scope: "global"},
			{Link: "eth0", CIDR: "fe80::c7:ff:fe00:1/64", Scope: "link", Auto: true},
			{Link: "eth1", CIDR: "192.0.2.5/24", Scope: "global"},
			{Link: "eth2", CIDR: "fe80::c7:ff:fe00:3/64", Scope: "link", Auto: true},
		},
		Routes: []format.Route{
			{Family: "inet", Table: 254, Gateway: "10.201.0.1", Link: "eth0"},
			{Family: "inet6", Table: 254, Gateway: "fd00:c7::1", Link: "eth0", Priority: 1024},
			{Family: "inet", Table: 100, Gateway: "192.0.2.1", Link: "eth1"}, // not the main table
			{Family: "inet", Table: 254, Dst: "192.0.2.128/25", Gateway: "192.0.2.1", Link: "eth1"},
		},
	}
	for _, tc := range []struct {
		name    string
		cfg     *format.Config
		network string
		want    string
	}{
		{"reference archive", fromRef, "podman", string(reference)},
		{"dual stack, two interfaces", dual, "crtnet", `{
  "crtnet": {
    "interfaces": {
      "eth0": {
        "subnets": [
          {
            "ipnet": "10.201.0.5/24",
            "gateway": "10.201.0.1"
          },
          {
            "ipnet": "fd00:c7::5/64",
            "gateway": "fd00:c7::1"
          }
        ],
        "mac_address": "02:c7:00:00:00:01"
      },
      "eth1": {
        "subnets": [
          {
            "ipnet": "192.0.2.5/24"
          }
        ],
        "mac_address": "02:c7:00:00:00:02"
      }
    }
  }
}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.MarshalIndent(NetworkStatus(tc.cfg, tc.network), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.want), &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
			// Podman indents the file the same way: byte for byte.
			if string(got) != tc.want {
				t.Errorf("same content, other layout:\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func addrOf(cfg *format.Config, link, cidr string) *format.Addr {
	for i := range cfg.Addrs {
		if cfg.Addrs[i].Link == link && cfg.Addrs[i].CIDR == cidr {
			return &cfg.Addrs[i]
		}
	}
	return nil
}
