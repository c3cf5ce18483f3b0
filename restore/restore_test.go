package restore

import (
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/trust"
	"github.com/crtool/crtool/internal/undo"
)

func TestMapMounts(t *testing.T) {
	md := &format.Metadata{Mounts: []format.ExternalMount{
		{Key: "/proc/kcore", Kind: format.MountBind, Source: "/dev/null"},
		{Key: "/sys/fs/cgroup/freezer", Kind: format.MountCgroup, Hierarchy: "freezer", CgroupPath: "/crtool-x/c"},
	}}
	if _, err := cgroups.MountPoint("freezer"); err != nil {
		md.Mounts[1] = format.ExternalMount{Key: "/sys/fs/cgroup", Kind: format.MountCgroup, Hierarchy: cgroups.Unified, CgroupPath: "/crtool-x/c"}
	}
	got, err := mapMounts(md, trust.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].GetVal() != "/dev/null" || !strings.HasSuffix(got[1].GetVal(), "/crtool-x/c") {
		t.Fatalf("mapMounts = %v", got)
	}
	md.Mounts = []format.ExternalMount{{Key: "/data", Kind: format.MountBind, Source: "/nonexistent/crtool/volume"}}
	if _, err := mapMounts(md, trust.Policy{HostPaths: []string{"/nonexistent"}}); err == nil || !strings.Contains(err.Error(), "create it") {
		t.Fatalf("missing source: %v", err)
	}
}

func TestCriuRestoreOptions(t *testing.T) {
	md := &format.Metadata{Options: format.DumpOptions{FileLocks: true}}
	ext := []*rpc.ExtMountMap{{Key: proto.String("/a"), Val: proto.String("/b")}}
	inh := []*rpc.InheritFd{{Key: proto.String("extRootNetNS"), Fd: proto.Int32(4)}}
	o := criuRestoreOptions(9, "/srv/root", md, Options{TCPEstablished: true}, ext, inh)
	if o.GetImagesDirFd() != 9 || o.GetRoot() != "/srv/root" || !o.GetTcpEstablished() || !o.GetFileLocks() || !o.GetManageCgroups() {
		t.Fatalf("options: %v", o)
	}
	if len(o.GetExtMnt()) != 1 || len(o.GetInheritFd()) != 1 {
		t.Fatalf("mounts/descriptors lost: %v", o)
	}
}

func TestNetnsFlagForHostNetwork(t *testing.T) {
	md := &format.Metadata{Namespaces: map[string]format.Namespace{"net": {Shared: true}}}
	if p, err := planNetwork(md, Options{}, &undo.Stack{}); p != nil || err != nil {
		t.Fatalf("host network: %v %v", p, err)
	}
	if _, err := planNetwork(md, Options{Netns: "/run/netns/x"}, &undo.Stack{}); err == nil || !strings.Contains(err.Error(), "does not apply") {
		t.Fatalf("--netns with a host-network container: %v", err)
	}
}
