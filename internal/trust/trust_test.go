package trust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/testutil"
)

// sane is the metadata of an ordinary container: its own namespaces, a
// root filesystem of its own, stdio on a pipe and on a log file.
func sane(t *testing.T) (*format.Metadata, string) {
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "container.log")
	if err := os.WriteFile(log, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return &format.Metadata{
		Container: format.ContainerInfo{ID: "0123abcd", Name: "web", Root: root},
		Cgroups:   format.CgroupInfo{Paths: map[string]string{"memory": "/crtool/web", "": "/crtool/web"}},
		Namespaces: map[string]format.Namespace{
			"net": {Inode: 1, Path: "/run/netns/web"}, "pid": {Inode: 2}, "user": {Inode: 3, Shared: true},
		},
		Mounts: []format.ExternalMount{
			{Key: "/proc/kcore", Kind: format.MountBind, Source: "/dev/null"},
			{Key: "/sys/fs/cgroup/memory", Kind: format.MountCgroup, Hierarchy: "memory", CgroupPath: "/"},
		},
		Files: []format.ExternalFile{
			{Key: "pipe:[1]", Kind: format.FilePipe, Flags: unix.O_WRONLY},
			{Key: "file[1:2]", Kind: format.FileReg, Path: log, Flags: unix.O_WRONLY},
		},
		Network: &format.Config{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}},
	}, dir
}

// TestCheckMetadata changes one field of a sane crtool.json at a time the
// way a crafted archive would, and checks the refusal names the field and
// is one line; some are allowed by the operator's options.
func TestCheckMetadata(t *testing.T) {
	md, dir := sane(t)
	if err := (Policy{HostPaths: []string{dir}}).CheckMetadata(md, "web"); err != nil {
		t.Fatalf("sane metadata refused: %v", err)
	}
	outside := t.TempDir()
	for _, tc := range []struct {
		name   string
		change func(md *format.Metadata)
		policy Policy
		field  string  // the error names it
		allow  *Policy // a policy that allows it, if any
	}{
		{name: "root is the host's", change: func(md *format.Metadata) { md.Container.Root = "/" }, field: "container.root",
			allow: &Policy{RootGiven: true}},
		{name: "root under /etc", change: func(md *format.Metadata) { md.Container.Root = "/etc/ssh" }, field: "container.root"},
		{name: "root through a symlink to /etc", change: func(md *format.Metadata) { md.Container.Root = filepath.Join(filepath.Dir(md.Container.Root), "etc") }, field: "container.root"},
		{name: "relative root", change: func(md *format.Metadata) { md.Container.Root = "rootfs" }, field: "container.root"},
		{name: "host network", change: func(md *format.Metadata) { md.Namespaces["net"] = format.Namespace{Shared: true} }, field: "namespaces.net.shared",
			allow: &Policy{AllowHostNamespaces: true}},
		{name: "host pid namespace", change: func(md *format.Metadata) { md.Namespaces["pid"] = format.Namespace{Shared: true} }, field: "namespaces.pid.shared",
			allow: &Policy{AllowHostNamespaces: true}},
		{name: "host netns path", change: func(md *format.Metadata) { md.Namespaces["net"] = format.Namespace{Path: "/proc/self/ns/net"} }, field: "namespaces.net.path",
			allow: &Policy{NetnsGiven: true}},
		{name: "netns path climbing", change: func(md *format.Metadata) {
			md.Namespaces["net"] = format.Namespace{Path: "/run/netns/../../proc/1/ns/net"}
		}, field: "namespaces.net.path"},
		{name: "bind source /", change: func(md *format.Metadata) { md.Mounts[0].Source = "/" }, field: "externalMounts[0].source",
			allow: &Policy{HostPaths: []string{"/"}}},
		{name: "bind source /etc", change: func(md *format.Metadata) { md.Mounts[0].Source = "/etc" }, field: "externalMounts[0].source"},
		{name: "bind source unclean", change: func(md *format.Metadata) { md.Mounts[0].Source = filepath.Dir(md.Container.Root) + "/../../etc" }, field: "externalMounts[0].source"},
		{name: "bind source through a symlink", change: func(md *format.Metadata) { md.Mounts[0].Source = filepath.Join(filepath.Dir(md.Container.Root), "etc") }, field: "externalMounts[0].source"},
		{name: "private content climbing", change: func(md *format.Metadata) { md.Mounts[0].Content = "../../etc/shadow" }, field: "externalMounts[0].content"},
		{name: "exported volume of the host's", change: func(md *format.Metadata) {
			md.Mounts[0].Source, md.Mounts[0].Content, md.Mounts[0].Exported = "/etc", "volumes/data.tar", true
		}, field: "externalMounts[0].source", allow: &Policy{HostPaths: []string{"/etc"}}},
		{name: "cgroup mount path", change: func(md *format.Metadata) { md.Mounts[1].CgroupPath = "/../../.." }, field: "externalMounts[1].cgroupPath"},
		{name: "external file /etc/shadow", change: func(md *format.Metadata) { md.Files[1].Path = "/etc/shadow" }, field: "externalFiles[1].path",
			allow: &Policy{HostPaths: []string{"/etc/shadow"}}},
		{name: "external file elsewhere", change: func(md *format.Metadata) { md.Files[1].Path = filepath.Join(outside, "x") }, field: "externalFiles[1].path"},
		{name: "file kind", change: func(md *format.Metadata) { md.Files[0].Kind = "fifo" }, field: "externalFiles[0].kind"},
		{name: "cgroup path", change: func(md *format.Metadata) { md.Cgroups.Paths["memory"] = "/../../../tmp" }, field: "cgroups.paths"},
		{name: "cgroup hierarchy", change: func(md *format.Metadata) { md.Cgroups.Paths["../x"] = "/a" }, field: "cgroups.paths"},
		{name: "sysctl", change: func(md *format.Metadata) { md.Network.Sysctls = map[string]string{"kernel.core_pattern": "|/tmp/x"} }, field: "network.sysctls"},
		{name: "link name", change: func(md *format.Metadata) { md.Network.Links = []format.Link{{Name: "eth0/../x"}} }, field: "network.links[0].name"},
		{name: "macvlan on a host interface", change: func(md *format.Metadata) {
			md.Network.Links = []format.Link{{Name: "mv0", Kind: format.KindMacvlan, Parent: &format.Parent{Name: "eth0", Netns: format.HostNetns}}}
		}, field: "network.links[0].parent", allow: &Policy{AllowHostNamespaces: true}},
		{name: "container id", change: func(md *format.Metadata) { md.Container.ID = "../../x" }, field: "container.id"},
		{name: "network lock", change: func(md *format.Metadata) { md.NetworkLock = "x; flush ruleset" }, field: "networkLock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md, dir := sane(t)
			if err := os.Symlink("/etc", filepath.Join(dir, "etc")); err != nil {
				t.Fatal(err)
			}
			tc.change(md)
			p := tc.policy
			p.HostPaths = append(p.HostPaths, dir)
			err := p.CheckMetadata(md, "web")
			if err == nil {
				t.Fatal("accepted")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.field) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming %s", msg, tc.field)
			}
			if !errors.Is(err, errdefs.ErrInvalidArchive) {
				t.Errorf("error %q is not ErrInvalidArchive", err)
			}
			if tc.allow != nil {
				a := *tc.allow
				a.HostPaths = append(a.HostPaths, dir)
				if err := a.CheckMetadata(md, "web"); err != nil {
					t.Errorf("refused with %+v: %v", a, err)
				}
			}
		})
	}
	// A private mount's recorded source is never opened: the archive
	// carries its content; so it is for an exported volume this host
	// lacks.
	priv, privDir := sane(t)
	priv.Mounts[0].Source, priv.Mounts[0].Content = "/etc/hosts", "private/etc/hosts"
	if err := (Policy{HostPaths: []string{privDir}}).CheckMetadata(priv, "web"); err != nil {
		t.Errorf("private mount: %v", err)
	}
	priv.Mounts[0].Source, priv.Mounts[0].Content, priv.Mounts[0].Exported = "/nonexistent/crtool/volume", "volumes/data.tar", true
	if err := (Policy{HostPaths: []string{privDir}}).CheckMetadata(priv, "web"); err != nil {
		t.Errorf("exported volume the host lacks: %v", err)
	}
	// A FIFO is refused before anything is done, not found blocking later.
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	md.Files[1].Path = fifo
	if err := (Policy{HostPaths: []string{dir}}).CheckMetadata(md, "web"); err == nil || !strings.Contains(err.Error(), "externalFiles[1].path") {
		t.Errorf("FIFO: %v", err)
	}
	md.Files[1].Path = filepath.Join(dir, "container.log")
	// The name becomes a directory and part of overlay options.
	if err := (Policy{HostPaths: []string{dir}}).CheckMetadata(md, ",upperdir=.,workdir=.."); err == nil || !strings.Contains(err.Error(), "Name") {
		t.Errorf("hostile name: %v", err)
	}
}

// TestOpenFile opens external files as restore does: a FIFO must be
// refused at once instead of blocking the restore, a device refused, a
// symlink as the last component never followed.
func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	p := Policy{HostPaths: []string{dir}}
	reg := filepath.Join(dir, "log")
	if err := os.WriteFile(reg, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := p.OpenFile("externalFiles[0].path", reg, unix.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := os.ReadFile(reg); string(b) != "old\nnew\n" {
		t.Errorf("log = %q: the write must append", b)
	}
	if f, err := p.OpenFile("externalFiles[0].path", "/dev/null", unix.O_RDWR); err != nil {
		t.Error(err)
	} else {
		f.Close()
	}

	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A symlink is resolved and its target checked: this one leads out.
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	bad := []string{fifo, filepath.Join(dir, "link")}
	if os.Geteuid() == 0 {
		mem := filepath.Join(dir, "mem")
		if err := unix.Mknod(mem, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 1))); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, mem)
	} else {
		testutil.RequireRoot(t)
	}
	for _, path := range bad {
		done := make(chan error, 1)
		go func() {
			f, err := p.OpenFile("externalFiles[0].path", path, unix.O_RDONLY)
			if f != nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: opened", path)
			} else if !strings.Contains(err.Error(), "externalFiles[0].path") {
				t.Errorf("%s: error %q does not name the field", path, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still opening after 5s", path)
		}
	}
}
