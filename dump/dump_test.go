package dump

import (
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/moby/sys/mountinfo"

	"github.com/crtool/crtool/format"
)

func parseMounts(t *testing.T, text string) []*mountinfo.Info {
	t.Helper()
	ms, err := mountinfo.GetMountsFromReader(strings.NewReader(strings.TrimSpace(text)+"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// Host and container mount tables as seen on a cgroup v1 host with a runc
// container (trimmed), plus a volume and a bind from inside the rootfs.
const hostMounts = `
26 1 254:0 / / rw,relatime - ext4 /dev/vda rw
23 26 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755
30 26 0:28 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
31 26 0:36 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
32 26 0:37 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
`

const containerMounts = `
68 44 254:0 /tmp/exp/bundle/rootfs / rw,relatime - ext4 /dev/vda rw
69 68 0:39 / /proc rw,relatime - proc proc rw
70 68 0:40 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
75 68 0:44 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
76 75 0:28 /crtexp/c1 /sys/fs/cgroup/cpu ro,nosuid - cgroup cgroup rw,cpu
84 75 0:36 /crtexp/c1 /sys/fs/cgroup/systemd ro,nosuid - cgroup cgroup rw,xattr,name=systemd
85 75 0:37 /crtexp/c1 /sys/fs/cgroup/unified ro,nosuid - cgroup2 cgroup2 rw
50 69 0:40 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
90 68 254:0 /srv/data /data rw,relatime - ext4 /dev/vda rw
91 68 254:0 /tmp/exp/bundle/rootfs/etc/app.conf /etc/app.conf rw,relatime - ext4 /dev/vda rw
92 68 0:6 /null /proc/kcore rw,relatime - devtmpfs devtmpfs rw,mode=755
`

func TestClassifyMounts(t *testing.T) {
	table, err := newMountTable(parseMounts(t, containerMounts))
	if err != nil {
		t.Fatal(err)
	}
	got, err := classifyMounts(table, parseMounts(t, hostMounts), func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	want := []format.ExternalMount{
		{Key: "/data", Kind: format.MountBind, Source: "/srv/data", FSType: "ext4"},
		{Key: "/proc/kcore", Kind: format.MountBind, Source: "/dev/null", FSType: "devtmpfs"},
		{Key: "/sys/fs/cgroup/cpu", Kind: format.MountCgroup, Source: "/sys/fs/cgroup/cpu/crtexp/c1", Hierarchy: "cpu", CgroupPath: "/crtexp/c1", FSType: "cgroup"},
		{Key: "/sys/fs/cgroup/systemd", Kind: format.MountCgroup, Source: "/sys/fs/cgroup/systemd/crtexp/c1", Hierarchy: "name=systemd", CgroupPath: "/crtexp/c1", FSType: "cgroup"},
		{Key: "/sys/fs/cgroup/unified", Kind: format.MountCgroup, Source: "/sys/fs/cgroup/unified/crtexp/c1", Hierarchy: "", CgroupPath: "/crtexp/c1", FSType: "cgroup2"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d external mounts %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// Mounts CRIU handles itself stay internal: the container's own proc,
	// tmpfs, a bind of its own /dev/null, a bind from inside its rootfs.
	for _, m := range got {
		switch m.Key {
		case "/proc", "/dev", "/proc/keys", "/etc/app.conf", "/sys/fs/cgroup":
			t.Errorf("%s classified as external", m.Key)
		}
	}
}

func TestRootPathFromMountinfo(t *testing.T) {
	table, err := newMountTable(parseMounts(t, containerMounts))
	if err != nil {
		t.Fatal(err)
	}
	if p := hostPath(parseMounts(t, hostMounts), table.root, func(string) bool { return true }); p != "/tmp/exp/bundle/rootfs" {
		t.Fatalf("root = %q", p)
	}
	if _, err := newMountTable(parseMounts(t, "69 68 0:39 / /proc rw - proc proc rw")); err == nil {
		t.Fatal("a table without a root mount was accepted")
	}
}

func TestCriuDumpOptions(t *testing.T) {
	c := &container{
		pid:        4242,
		freezerDir: "/sys/fs/cgroup/freezer/ctr",
		namespaces: map[string]format.Namespace{"net": {Inode: 4026532290}, "mnt": {Inode: 1}},
	}
	mounts := []format.ExternalMount{{Key: "/sys/fs/cgroup/cpu", Kind: format.MountCgroup}}
	files := []format.ExternalFile{
		{Key: "file[1a:9845b2]", Kind: format.FileReg},
		{Key: "pipe:[123]", Kind: format.FilePipe},
	}
	o := criuDumpOptions(c, 7, mounts, files, Options{TCPEstablished: true})
	if o.GetPid() != 4242 || o.GetImagesDirFd() != 7 || o.GetFreezeCgroup() != c.freezerDir {
		t.Fatalf("basic options wrong: %v", o)
	}
	// crtool kills the container itself after the archive is written, so
	// CRIU must always leave it running (and frozen).
	if !o.GetLeaveRunning() || !o.GetTcpEstablished() || !o.GetManageCgroups() {
		t.Fatalf("leave-running/tcp/cgroups options wrong: %v", o)
	}
	if o.GetNetworkLock() != rpc.CriuNetworkLockMethod_NFTABLES {
		t.Fatalf("network lock = %v, want nftables", o.GetNetworkLock())
	}
	wantExt := []string{"net[4026532290]:" + NetnsKey, "file[1a:9845b2]"}
	if strings.Join(o.GetExternal(), " ") != strings.Join(wantExt, " ") {
		t.Fatalf("external = %v, want %v (pipes need no external at dump)", o.GetExternal(), wantExt)
	}
	if len(o.GetExtMnt()) != 1 || o.GetExtMnt()[0].GetKey() != "/sys/fs/cgroup/cpu" {
		t.Fatalf("ext mounts = %v", o.GetExtMnt())
	}
	c.namespaces["net"] = format.Namespace{Inode: 9, Shared: true}
	if o := criuDumpOptions(c, 7, nil, nil, Options{}); len(o.GetExternal()) != 0 {
		t.Fatalf("host network namespace marked external: %v", o.GetExternal())
	}
}

func TestLimitValue(t *testing.T) {
	if limitValue("unlimited") != ^uint64(0) || limitValue("1024") != 1024 {
		t.Fatal("limitValue")
	}
}

func TestOverlayLowers(t *testing.T) {
	opts := "rw,lowerdir=l/AAA:l/BBB:/abs/CCC,upperdir=/var/lib/containers/storage/overlay/xyz/diff,workdir=/var/lib/containers/storage/overlay/xyz/work"
	got := overlayLowers(opts, overlayOpt(opts, "upperdir"))
	want := []string{"/var/lib/containers/storage/overlay/l/AAA", "/var/lib/containers/storage/overlay/l/BBB", "/abs/CCC"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("overlayLowers = %v, want %v", got, want)
	}
}
