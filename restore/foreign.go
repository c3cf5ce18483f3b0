package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/cgroup"
	criucore "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fdinfo"
	criufs "github.com/checkpoint-restore/go-criu/v7/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/mnt"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/images"
	"github.com/crtool/crtool/netns"
	"github.com/crtool/crtool/rootfs"
	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// StateDir holds what crtool creates on the host for containers restored
// from archives it did not write: the overlay over --root and the files
// that replace the writer's host paths.
var StateDir = "/var/lib/crtool/containers"

// podmanConfig is the part of config.dump restore reads.
type podmanConfig struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// foreign describes an archive written by Podman, CRI-O or the kubelet,
// whose crtool.json is missing, in crtool's terms.
type foreign struct {
	spec     *specs.Spec
	rootMode uint32 // mode of the root directory CRIU recorded
	dir      string // StateDir/NAME, created by this restore
	// targets are the mount points on the root filesystem, with the
	// source of the external bind mounts among them ("" for the others).
	targets map[string]string
}

// foreignMetadata builds crtool's metadata for an archive without
// crtool.json from what it carries: spec.dump, config.dump,
// network.status, descriptors.json and CRIU's own images. Host paths of the
// machine that wrote it are replaced by the container's own state
// directory: generated /etc/hosts, /etc/resolv.conf, /etc/hostname and
// /run/.containerenv, and /dev/shm from devshm-checkpoint.tar.
func foreignMetadata(stage string, opts Options) (*images.Metadata, *foreign, error) {
	imgDir := filepath.Join(stage, images.CheckpointDir)
	specJSON, err := os.ReadFile(filepath.Join(stage, images.SpecDumpFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: it has neither %s nor %s", ErrBadArchive, images.MetadataFile, images.SpecDumpFile)
	}
	var spec specs.Spec
	if err := json.Unmarshal(specJSON, &spec); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrBadArchive, images.SpecDumpFile, err)
	}
	var cfg podmanConfig
	if b, err := os.ReadFile(filepath.Join(stage, images.ConfigDumpFile)); err == nil {
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrBadArchive, images.ConfigDumpFile, err)
		}
	}
	md := &images.Metadata{
		Version:    images.MetadataVersion,
		Container:  images.ContainerInfo{ID: cfg.ID, Name: cfg.Name},
		Namespaces: map[string]images.Namespace{},
		Options:    images.DumpOptions{FileLocks: true},
	}
	if md.Container.Name == "" {
		md.Container.Name = spec.Annotations["io.kubernetes.cri-o.ContainerName"]
	}
	if md.Container.Name == "" {
		md.Container.Name = spec.Hostname
	}
	if opts.Name != "" {
		md.Container.Name = opts.Name
	}
	if md.Container.Name == "" || strings.ContainsAny(md.Container.Name, "/\x00") || md.Container.Name == "." || md.Container.Name == ".." {
		return nil, nil, fmt.Errorf("%w: no usable container name in the archive: pass --name", ErrBadArchive)
	}
	if spec.Process != nil {
		md.Container.Command = spec.Process.Args
	}
	if tcp, _ := filepath.Glob(filepath.Join(imgDir, "tcp-stream-*.img")); len(tcp) > 0 {
		md.Options.TCPEstablished = true
	}
	if md.Cgroups.Paths, err = rootCgroups(imgDir); err != nil {
		return nil, nil, err
	}
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				md.Namespaces["net"] = images.Namespace{}
			}
		}
	}
	if _, ok := md.Namespaces["net"]; !ok {
		md.Namespaces["net"] = images.Namespace{Shared: true}
	} else if b, err := os.ReadFile(filepath.Join(stage, images.NetworkStatusFile)); err == nil {
		if md.Network, err = netns.ConfigFromPodman(b); err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrBadArchive, images.NetworkStatusFile, err)
		}
	} else {
		md.Network = &netns.Config{}
	}
	if md.Files, err = descriptorFiles(imgDir); err != nil {
		return nil, nil, err
	}
	f := &foreign{spec: &spec, dir: filepath.Join(StateDir, md.Container.Name)}
	if f.rootMode, err = rootMode(imgDir); err != nil {
		return nil, nil, err
	}
	if md.Mounts, err = f.externalMounts(imgDir, stage, md); err != nil {
		return nil, nil, err
	}
	return md, f, nil
}

// rootCgroups reads the cgroups of the dumped tree's root task.
func rootCgroups(imgDir string) (map[string]string, error) {
	msgs, err := images.DecodeImageFile(filepath.Join(imgDir, "pstree.img"), images.PstreeImage)
	if err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("%w: checkpoint/pstree.img: %v", ErrBadArchive, err)
	}
	root := msgs[0].(*pstree.PstreeEntry).GetPid()
	core, err := images.DecodeImageFile(filepath.Join(imgDir, fmt.Sprintf("core-%d.img", root)), images.CoreImage)
	if err != nil || len(core) == 0 {
		return nil, fmt.Errorf("%w: checkpoint/core-%d.img: %v", ErrBadArchive, root, err)
	}
	ce := core[0].(*criucore.CoreEntry)
	// CRIU 3.x and later keep the set per thread.
	set := ce.GetThreadCore().GetCgSet()
	if set == 0 {
		set = ce.GetTc().GetCgSet()
	}
	cg, err := images.DecodeImageFile(filepath.Join(imgDir, "cgroup.img"), images.CgroupImage)
	if err != nil || len(cg) == 0 {
		return nil, fmt.Errorf("%w: checkpoint/cgroup.img: %v", ErrBadArchive, err)
	}
	for _, s := range cg[0].(*cgroup.CgroupEntry).GetSets() {
		if s.GetId() != set {
			continue
		}
		paths := map[string]string{}
		for _, c := range s.GetCtls() {
			paths[c.GetName()] = c.GetPath()
		}
		return paths, nil
	}
	return nil, fmt.Errorf("%w: checkpoint/cgroup.img has no cgroup set %d for pid %d", ErrBadArchive, set, root)
}

// rootMode reads the mode CRIU recorded for the dumped tree's root
// directory, which it checks on restore.
func rootMode(imgDir string) (uint32, error) {
	msgs, err := images.DecodeImageFile(filepath.Join(imgDir, "pstree.img"), images.PstreeImage)
	if err != nil || len(msgs) == 0 {
		return 0, fmt.Errorf("%w: checkpoint/pstree.img: %v", ErrBadArchive, err)
	}
	pid := msgs[0].(*pstree.PstreeEntry).GetPid()
	fsMsgs, err := images.DecodeImageFile(filepath.Join(imgDir, fmt.Sprintf("fs-%d.img", pid)), images.FsImage)
	if err != nil || len(fsMsgs) == 0 {
		return 0, fmt.Errorf("%w: checkpoint/fs-%d.img: %v", ErrBadArchive, pid, err)
	}
	rootID := fsMsgs[0].(*criufs.FsEntry).GetRootId()
	files, err := images.DecodeImageFile(filepath.Join(imgDir, "files.img"), images.FilesImage)
	if err != nil {
		return 0, fmt.Errorf("%w: checkpoint/%v", ErrBadArchive, err)
	}
	for _, m := range files {
		if fe := m.(*fdinfo.FileEntry); fe.GetId() == rootID && fe.GetReg() != nil {
			return fe.GetReg().GetMode(), nil
		}
	}
	return 0, fmt.Errorf("%w: checkpoint/files.img does not describe the root directory (id %d)", ErrBadArchive, rootID)
}

// descriptorFiles turns runc's descriptors.json into crtool's external
// files: stdio pipes that led to the writer's supervisor (conmon).
func descriptorFiles(imgDir string) ([]images.ExternalFile, error) {
	b, err := os.ReadFile(filepath.Join(imgDir, images.DescriptorsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var desc []string
	if err := json.Unmarshal(b, &desc); err != nil {
		return nil, fmt.Errorf("%w: checkpoint/%s: %v", ErrBadArchive, images.DescriptorsFile, err)
	}
	var out []images.ExternalFile
	seen := map[string]int{}
	for fd, d := range desc {
		if !strings.HasPrefix(d, "pipe:[") {
			continue
		}
		if i, ok := seen[d]; ok {
			out[i].Users = append(out[i].Users, images.FdRef{PID: 1, Fd: fd})
			continue
		}
		flags := unix.O_WRONLY
		if fd == 0 {
			flags = unix.O_RDONLY
		}
		seen[d] = len(out)
		out = append(out, images.ExternalFile{Key: d, Kind: images.FilePipe, Flags: flags, Users: []images.FdRef{{PID: 1, Fd: fd}}})
	}
	return out, nil
}

// externalMounts finds the mounts CRIU recorded as external (their ext_key
// is what the writer passed at dump: the mount point, or /dev/null for
// masked paths) and says where each comes from on this host.
func (f *foreign) externalMounts(imgDir, stage string, md *images.Metadata) ([]images.ExternalMount, error) {
	files, _ := filepath.Glob(filepath.Join(imgDir, "mountpoints-*.img"))
	var out []images.ExternalMount
	seen := map[string]bool{}
	f.targets = map[string]string{}
	for _, file := range files {
		msgs, err := images.DecodeImageFile(file, images.MountsImage)
		if err != nil {
			return nil, fmt.Errorf("%w: checkpoint/%v", ErrBadArchive, err)
		}
		var rootID uint32
		for _, m := range msgs {
			if me := m.(*mnt.MntEntry); me.GetMountpoint() == "/" {
				rootID = me.GetMntId()
			}
		}
		for _, m := range msgs {
			me := m.(*mnt.MntEntry)
			var em images.ExternalMount
			if key := me.GetExtKey(); key != "" && !seen[key] {
				seen[key] = true
				if em, err = f.source(me, stage, md); err != nil {
					return nil, err
				}
				out = append(out, em)
			}
			// The writer's runtime created the mount points on the
			// root filesystem; restore must too (see mountTargets).
			if me.GetParentMntId() == rootID && me.GetMountpoint() != "/" {
				f.targets[me.GetMountpoint()] = em.Source
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// generated are the files Podman bind-mounts from its container directory;
// restore writes its own versions into the container's state directory.
var generated = map[string]string{
	"/etc/hosts":         "hosts",
	"/etc/resolv.conf":   "resolv.conf",
	"/etc/hostname":      "hostname",
	"/run/.containerenv": ".containerenv",
	"/dev/shm":           "shm",
}

func (f *foreign) source(me *mnt.MntEntry, stage string, md *images.Metadata) (images.ExternalMount, error) {
	key, mp := me.GetExtKey(), me.GetMountpoint()
	em := images.ExternalMount{Key: key}
	switch {
	case mnt.Fstype(me.GetFstype()) == mnt.Fstype_CGROUP || mnt.Fstype(me.GetFstype()) == mnt.Fstype_CGROUP2:
		em.Kind = images.MountCgroup
		em.CgroupPath = me.GetRoot()
		em.Hierarchy = hierarchyOfMount(mp, mnt.Fstype(me.GetFstype()) == mnt.Fstype_CGROUP2)
		if _, err := cgroups.MountPoint(em.Hierarchy); err != nil {
			return em, fmt.Errorf("%w: the container's cgroup mount %s needs hierarchy %q, which this host lacks", ErrConflict, mp, em.Hierarchy)
		}
		return em, nil
	case key == os.DevNull || f.masked(mp):
		em.Kind, em.Source = images.MountBind, os.DevNull
		return em, nil
	}
	em.Kind = images.MountBind
	if name, ok := generated[mp]; ok {
		em.Source = filepath.Join(f.dir, "userdata", name)
		return em, nil
	}
	for _, m := range f.spec.Mounts {
		if path.Clean(m.Destination) == path.Clean(mp) && m.Source != "" {
			if _, err := os.Stat(m.Source); err == nil {
				em.Source = m.Source
				return em, nil
			}
			return em, fmt.Errorf("%w: mount %s of the container came from %s on the host that wrote the archive, which does not exist here: create it", ErrConflict, mp, m.Source)
		}
	}
	return em, fmt.Errorf("%w: the container's mount %s (external key %q) has no known source: the archive's spec.dump does not list it", ErrBadArchive, mp, key)
}

func (f *foreign) masked(mp string) bool {
	if f.spec.Linux == nil {
		return false
	}
	for _, p := range f.spec.Linux.MaskedPaths {
		if path.Clean(p) == path.Clean(mp) {
			return true
		}
	}
	return false
}

// hierarchyOfMount names the cgroup hierarchy of a cgroup mount inside a
// container: /sys/fs/cgroup/memory is "memory", .../systemd is
// "name=systemd", a cgroup2 mount the unified hierarchy.
func hierarchyOfMount(mp string, v2 bool) string {
	if v2 {
		return cgroups.Unified
	}
	base := path.Base(mp)
	if base == "systemd" {
		return "name=systemd"
	}
	// Co-mounted controllers appear as "cpu,cpuacct"; any one names the
	// hierarchy.
	return strings.Split(base, ",")[0]
}

// prepare creates the container's state directory and returns the root
// filesystem to restore into: an overlay whose lower layer is lower (the
// image's root filesystem, never modified) carrying the archive's
// rootfs-diff.tar and deleted.files, so the container finds the files it
// wrote before the dump.
func (f *foreign) prepare(ctx context.Context, stage, lower string, md *images.Metadata) (string, error) {
	for _, d := range []string{"upper", "work", "merged", "userdata/shm"} {
		if err := os.MkdirAll(filepath.Join(f.dir, d), 0o700); err != nil {
			return "", fmt.Errorf("create %s: %w", f.dir, err)
		}
	}
	// The overlay's root directory takes its mode and owner from the upper
	// directory; CRIU checks the mode against the dumped root's.
	var st unix.Stat_t
	if err := unix.Stat(lower, &st); err != nil {
		return "", fmt.Errorf("stat --root %s: %w", lower, err)
	}
	upper := filepath.Join(f.dir, "upper")
	mode := f.rootMode & 0o7777
	if mode == 0 {
		mode = st.Mode & 0o7777
	}
	if err := unix.Chmod(upper, mode); err != nil {
		return "", err
	}
	if err := os.Chown(upper, int(st.Uid), int(st.Gid)); err != nil {
		return "", err
	}
	merged := filepath.Join(f.dir, "merged")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(f.dir, "upper"), filepath.Join(f.dir, "work"))
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount an overlay over %s: %w", lower, err)
	}
	diff, deleted := filepath.Join(stage, images.RootfsDiffTar), filepath.Join(stage, images.DeletedFilesFile)
	if _, err := os.Stat(diff); err != nil {
		diff = ""
	}
	if _, err := os.Stat(deleted); err != nil {
		deleted = ""
	}
	if err := rootfs.Apply(ctx, merged, diff, deleted); err != nil {
		return "", fmt.Errorf("%w: apply the archive's root filesystem changes: %v", ErrBadArchive, err)
	}
	if err := f.writeUserdata(stage, md); err != nil {
		return "", err
	}
	if err := f.mountTargets(merged); err != nil {
		return "", err
	}
	return merged, nil
}

// mountTargets creates, in the overlay, the mount points that the image
// lacks: the writer's runtime made them (runc does for /proc, /sys,
// /etc/hostname...), and CRIU only mounts onto existing paths. Paths are
// resolved inside the root, never through a symlink out of it.
func (f *foreign) mountTargets(root string) error {
	rootDir, err := os.Open(root)
	if err != nil {
		return err
	}
	defer rootDir.Close()
	for mp, source := range f.targets {
		if mp == "" || mp == "/" {
			continue
		}
		if h, err := securejoin.OpenInRoot(root, mp); err == nil {
			h.Close()
			continue
		}
		dir := true
		if st, err := os.Stat(source); err == nil && !st.IsDir() {
			dir = false
		}
		if dir {
			h, err := securejoin.MkdirAllHandle(rootDir, mp, 0o755)
			if err != nil {
				return fmt.Errorf("create mount point %s: %w", mp, err)
			}
			h.Close()
			continue
		}
		parent, err := securejoin.MkdirAllHandle(rootDir, path.Dir(mp), 0o755)
		if err != nil {
			return fmt.Errorf("create mount point %s: %w", mp, err)
		}
		fd, err := unix.Openat(int(parent.Fd()), path.Base(mp), unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		parent.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create mount point %s: %w", mp, err)
		}
		if err == nil {
			unix.Close(fd)
		}
	}
	return nil
}

// create makes the container's state directory, which must not exist yet.
func (f *foreign) create(name string) error {
	if err := os.MkdirAll(filepath.Dir(f.dir), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(f.dir), err)
	}
	if err := os.Mkdir(f.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s exists: a container named %s was restored here before; pass --name or remove it", ErrConflict, f.dir, name)
		}
		return fmt.Errorf("create %s: %w", f.dir, err)
	}
	return nil
}

// writeUserdata writes the files that replace Podman's per-container files.
func (f *foreign) writeUserdata(stage string, md *images.Metadata) error {
	ud := filepath.Join(f.dir, "userdata")
	hostname := f.spec.Hostname
	if hostname == "" {
		hostname = md.Container.Name
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
	if md.Network != nil {
		for _, a := range md.Network.Addrs {
			if ip, _, ok := strings.Cut(a.CIDR, "/"); ok && !a.Auto && a.Link != "lo" {
				hosts += ip + "\t" + hostname + "\n"
			}
		}
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = nil
	}
	for name, content := range map[string][]byte{
		"hosts":         []byte(hosts),
		"hostname":      []byte(hostname + "\n"),
		"resolv.conf":   resolv,
		".containerenv": nil,
	} {
		if err := os.WriteFile(filepath.Join(ud, name), content, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := os.Chmod(filepath.Join(ud, "shm"), 0o1777); err != nil {
		return err
	}
	if shm, err := os.Open(filepath.Join(stage, images.DevShmCheckpointTar)); err == nil {
		defer shm.Close()
		if _, err := images.Extract(context.Background(), shm, filepath.Join(ud, "shm"), images.ExtractOptions{}); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadArchive, images.DevShmCheckpointTar, err)
		}
	}
	return nil
}

// remove undoes prepare.
func (f *foreign) remove() {
	merged := filepath.Join(f.dir, "merged")
	if err := unix.Unmount(merged, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		_ = unix.Unmount(merged, unix.MNT_DETACH)
	}
	_ = os.RemoveAll(f.dir)
}
