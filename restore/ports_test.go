package restore

import (
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
)

func TestContainerIPv4(t *testing.T) {
	cfg := &format.Config{Addrs: []format.Addr{
		{Link: "lo", CIDR: "127.0.0.1/8", Scope: "host", Auto: true},
		{Link: "eth0", CIDR: "fe80::1/64", Scope: "link", Auto: true},
		{Link: "eth0", CIDR: "fd00::2/64", Scope: "global"},
		{Link: "eth0", CIDR: "10.123.7.2/24", Scope: "global"},
	}}
	ip, err := containerIPv4(cfg)
	if err != nil || ip.String() != "10.123.7.2" {
		t.Fatalf("containerIPv4 = %v, %v", ip, err)
	}
	if _, err := containerIPv4(&format.Config{Addrs: cfg.Addrs[:3]}); err == nil {
		t.Fatal("no IPv4 address: want an error")
	}
}

func TestHostBridge(t *testing.T) {
	md := &format.Metadata{Network: &format.Config{Links: []format.Link{
		{Name: "lo", Kind: format.KindLoopback},
		{Name: "eth0", Kind: format.KindVeth, Peer: &format.Peer{Name: "veth0", Netns: format.HostNetns, Master: "podman1"}},
	}}}
	if b := hostBridge(md, Options{}); b != "podman1" {
		t.Fatalf("hostBridge = %q, want podman1", b)
	}
	if b := hostBridge(md, Options{Bridge: "br9"}); b != "br9" {
		t.Fatalf("hostBridge with --bridge = %q, want br9", b)
	}
	md.Network.Links[1].Peer.Netns = "/run/netns/hub"
	if b := hostBridge(md, Options{}); b != "" {
		t.Fatalf("hostBridge of a peer in another namespace = %q, want none", b)
	}
}

func TestMapVolumes(t *testing.T) {
	md := &format.Metadata{Mounts: []format.ExternalMount{
		{Key: "/data", Kind: format.MountBind, Source: "/srv/data"},
		{Key: "/etc/hosts", Kind: format.MountBind, Source: "/run/containers/storage/x/userdata/hosts", Content: "private/etc/hosts"},
	}}
	r := &restorer{md: md, opts: Options{Volumes: map[string]string{"/data/": "/mnt/data"}}}
	if err := r.mapVolumes(); err != nil || md.Mounts[0].Source != "/mnt/data" {
		t.Fatalf("mapVolumes: %v, source %s", err, md.Mounts[0].Source)
	}
	r.opts.Volumes = map[string]string{"/etc/hosts": "/tmp/hosts"}
	if err := r.mapVolumes(); err == nil || !strings.Contains(err.Error(), "its volumes: /data") {
		t.Fatalf("a private mount taken for a volume: %v", err)
	}
}
