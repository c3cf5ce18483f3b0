package inspect

import (
	"sort"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/mnt"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/netdev"
	"golang.org/x/sys/unix"
)

// fsTypes names the fstype values of mountpoints-*.img (CRIU's enum
// fstype); others carry their name in fsname, or none when CRIU does not
// handle the filesystem itself ("other": a bind mount from the host, say).
var fsTypes = map[uint32]string{
	1: "proc", 2: "sysfs", 3: "devtmpfs", 4: "binfmt_misc", 5: "tmpfs", 6: "devpts", 7: "simfs",
	8: "pstore", 9: "securityfs", 10: "fusectl", 11: "debugfs", 12: "cgroup", 13: "aufs", 14: "mqueue",
	15: "fuse", 17: "overlay", 18: "autofs", 19: "tracefs", 23: "cgroup2",
}

// mounts gathers the mounts of spec.dump, of CRIU's mount images, and those
// crtool or CRI-O recorded as external.
func mounts(c *contents, md *metadata) (*Mounts, error) {
	ms := &Mounts{}
	if md.spec != nil {
		for _, m := range md.spec.Mounts {
			ms.Spec = append(ms.Spec, SpecMount{Destination: m.Destination, Type: m.Type, Source: m.Source, Options: m.Options})
		}
	}
	for _, name := range c.names("mountpoints-", ".img") {
		msgs, err := c.image(name, mountsImage)
		if err != nil {
			return nil, err
		}
		for _, msg := range msgs {
			e := msg.(*mnt.MntEntry)
			fst, ok := fsTypes[e.GetFstype()]
			if !ok {
				fst = firstOf(e.GetFsname(), "other")
			}
			ms.CRIU = append(ms.CRIU, CRIUMount{
				ID:          e.GetMntId(),
				Parent:      e.GetParentMntId(),
				Mountpoint:  e.GetMountpoint(),
				FSType:      fst,
				Source:      e.GetSource(),
				Root:        e.GetRoot(),
				ReadOnly:    e.GetFlags()&unix.MS_RDONLY != 0,
				ExternalKey: e.GetExtKey(),
			})
		}
	}
	sort.SliceStable(ms.CRIU, func(i, j int) bool {
		a, b := ms.CRIU[i], ms.CRIU[j]
		if a.Mountpoint != b.Mountpoint {
			return a.Mountpoint < b.Mountpoint
		}
		return a.ID < b.ID
	})
	if md.crtool != nil {
		for _, m := range md.crtool.Mounts {
			ms.External = append(ms.External, ExternalMount{Key: m.Key, Kind: m.Kind, Source: firstOf(m.Source, m.CgroupPath), Content: m.Content})
		}
	}
	for _, b := range md.bindMounts {
		ms.BindMounts = append(ms.BindMounts, BindMount(b))
	}
	return ms, nil
}

// network gathers what the archive says about the container's network.
func network(c *contents, md *metadata) (*Network, error) {
	n := &Network{}
	if md.crtool != nil {
		n.Captured = md.crtool.Network
		n.Ports = md.crtool.Ports
	}
	for name, st := range md.netStatus {
		if n.Podman == nil {
			n.Podman = map[string]PodmanNetwork{}
		}
		pn := PodmanNetwork{Interfaces: map[string]PodmanInterface{}}
		for ifname, iface := range st.Interfaces {
			pi := PodmanInterface{MAC: iface.MAC}
			for _, s := range iface.Subnets {
				pi.Subnets = append(pi.Subnets, PodmanSubnet{IPNet: s.IPNet, Gateway: s.Gateway})
			}
			pn.Interfaces[ifname] = pi
		}
		n.Podman[name] = pn
	}
	for _, name := range c.names("netns-", ".img") {
		msg, err := c.firstEntry(name, netnsImage)
		if err != nil {
			return nil, err
		}
		if k := msg.(*netdev.NetnsEntry).GetExtKey(); k != "" {
			n.CRIUExternalKey = strings.TrimSpace(k)
		}
	}
	return n, nil
}
