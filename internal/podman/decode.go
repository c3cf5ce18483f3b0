package podman

import (
	"cmp"
	"encoding/json"
	"errors"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/mnt"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/criuimg"
	"github.com/crtool/crtool/internal/errdefs"
)

// Checkpoint is an unpacked archive that Podman, CRI-O or the kubelet wrote
// (it has no crtool.json), described in crtool's terms.
type Checkpoint struct {
	Metadata *format.Metadata
	Spec     *specs.Spec
	// RootMode is the mode of the root directory CRIU recorded.
	RootMode uint32
	// Dir is the container's state directory on this host, where restore
	// puts the files that replace the writer's host paths.
	Dir string
	// Targets are the mount points on the root filesystem, with the
	// source of the external bind mounts among them ("" for the others).
	Targets map[string]string
}

// Generated are the files Podman bind-mounts from its container directory,
// by mount point, with the name restore gives its own version under
// Dir/userdata.
var Generated = map[string]string{
	"/etc/hosts":         "hosts",
	"/etc/resolv.conf":   "resolv.conf",
	"/etc/hostname":      "hostname",
	"/run/.containerenv": ".containerenv",
	"/dev/shm":           "shm",
}

// Decode describes the archive unpacked in stage from what it carries:
// spec.dump, config.dump, network.status, descriptors.json and CRIU's own
// images. name, when set, replaces the recorded container name; the
// container's state directory is stateRoot/NAME. It reads only stage: what
// the archive asks of this host (mount sources, cgroup hierarchies) is the
// caller's to check.
func Decode(stage, name, stateRoot string) (*Checkpoint, error) {
	imgDir := filepath.Join(stage, format.CheckpointDir)
	specJSON, err := format.ReadMetadataFile(filepath.Join(stage, format.SpecDumpFile), format.SpecDumpFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errdefs.Newf(errdefs.ErrInvalidArchive, "it has neither %s nor %s", format.MetadataFile, format.SpecDumpFile)
	}
	if err != nil {
		return nil, errdefs.Newf(errdefs.ErrInvalidArchive, "%w", err)
	}
	var spec specs.Spec
	if err := format.Decode(format.SpecDumpFile, specJSON, &spec); err != nil {
		return nil, errdefs.Newf(errdefs.ErrInvalidArchive, "%w", err)
	}
	var cfg format.ContainerConfig
	if b, err := format.ReadMetadataFile(filepath.Join(stage, format.ConfigDumpFile), format.ConfigDumpFile); err == nil {
		if err := format.Decode(format.ConfigDumpFile, b, &cfg); err != nil {
			return nil, errdefs.Newf(errdefs.ErrInvalidArchive, "%w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, errdefs.Newf(errdefs.ErrInvalidArchive, "%w", err)
	}
	md := &format.Metadata{
		Version:    format.MetadataVersion,
		Container:  format.ContainerInfo{ID: cfg.ID, Name: cfg.Name, Image: cfg.RootfsImageName, ImageID: cfg.RootfsImageID},
		Namespaces: map[string]format.Namespace{},
		Options:    format.DumpOptions{FileLocks: true},
		Ports:      format.PortsFromPodman(cfg.PortMappings),
	}
	md.Container.Name = cmp.Or(name, kubeName(spec.Annotations), cfg.Name, spec.Annotations["io.kubernetes.cri-o.ContainerName"], spec.Hostname)
	// The name becomes the state directory's and goes into the overlay's
	// mount options: ",upperdir=." would add options of its own.
	if err := format.CheckName("container name", md.Container.Name); err != nil {
		return nil, errdefs.Hint(errdefs.Newf(errdefs.ErrInvalidArchive, "%w", err), "pass ", "Name", " with a valid name")
	}
	if spec.Process != nil {
		md.Container.Command = spec.Process.Args
	}
	if tcp, _ := filepath.Glob(filepath.Join(imgDir, "tcp-stream-*.img")); len(tcp) > 0 {
		md.Options.TCPEstablished = true
	}
	imgs := criuimg.New(criuimg.Dir(imgDir), format.CheckpointDir+"/")
	if md.Cgroups.Paths, err = imgs.Cgroups(); err != nil {
		return nil, err
	}
	if md.Namespaces["net"], md.Network, err = network(&spec, stage); err != nil {
		return nil, err
	}
	if md.Files, err = descriptorFiles(imgDir); err != nil {
		return nil, err
	}
	c := &Checkpoint{Metadata: md, Spec: &spec, Dir: filepath.Join(stateRoot, md.Container.Name)}
	if c.RootMode, err = imgs.RootMode(); err != nil {
		return nil, err
	}
	mounts, _ := filepath.Glob(filepath.Join(imgDir, "mountpoints-*.img"))
	for i := range mounts {
		mounts[i] = filepath.Base(mounts[i])
	}
	nss, err := imgs.MountNamespaces(mounts)
	if err != nil {
		return nil, err
	}
	if md.Mounts, c.Targets, err = c.externalMounts(nss); err != nil {
		return nil, err
	}
	return c, nil
}

// network describes the container's network namespace: the host's when
// the spec has none of its own, else one rebuilt from network.status.
func network(spec *specs.Spec, stage string) (format.Namespace, *format.Config, error) {
	own := false
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			own = own || ns.Type == specs.NetworkNamespace
		}
	}
	if !own {
		return format.Namespace{Shared: true}, nil, nil
	}
	b, err := format.ReadMetadataFile(filepath.Join(stage, format.NetworkStatusFile), format.NetworkStatusFile)
	if errors.Is(err, os.ErrNotExist) {
		return format.Namespace{}, &format.Config{}, nil
	}
	if err != nil {
		return format.Namespace{}, nil, errdefs.Newf(errdefs.ErrInvalidArchive, "%w", err)
	}
	cfg, err := NetworkConfig(b)
	if err != nil {
		return format.Namespace{}, nil, errdefs.Newf(errdefs.ErrInvalidArchive, "%s: %w", format.NetworkStatusFile, err)
	}
	return format.Namespace{}, cfg, nil
}

// descriptorFiles turns runc's descriptors.json into crtool's external
// files: stdio pipes that led to the writer's supervisor (conmon).
func descriptorFiles(imgDir string) ([]format.ExternalFile, error) {
	b, err := format.ReadMetadataFile(filepath.Join(imgDir, format.DescriptorsFile), format.CheckpointDir+"/"+format.DescriptorsFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var desc format.Descriptors
	if err := json.Unmarshal(b, &desc); err != nil {
		return nil, errdefs.Newf(errdefs.ErrInvalidArchive, "%s/%s: %w", format.CheckpointDir, format.DescriptorsFile, err)
	}
	var out []format.ExternalFile
	seen := map[string]int{}
	for fd, d := range desc {
		if !strings.HasPrefix(d, "pipe:[") {
			continue
		}
		if i, ok := seen[d]; ok {
			out[i].Users = append(out[i].Users, format.FdRef{PID: 1, Fd: fd})
			continue
		}
		flags := unix.O_WRONLY
		if fd == 0 {
			flags = unix.O_RDONLY
		}
		seen[d] = len(out)
		out = append(out, format.ExternalFile{Key: d, Kind: format.FilePipe, Flags: flags, Users: []format.FdRef{{PID: 1, Fd: fd}}})
	}
	return out, nil
}

// externalMounts finds the mounts CRIU recorded as external (their ext_key
// is what the writer passed at dump: the mount point, or /dev/null for
// masked paths) and says where each comes from, and the mount points on
// the root filesystem.
func (c *Checkpoint) externalMounts(nss []criuimg.MountNamespace) ([]format.ExternalMount, map[string]string, error) {
	var out []format.ExternalMount
	seen := map[string]bool{}
	targets := map[string]string{}
	for _, ns := range nss {
		var rootID uint32
		if ns.Root != nil {
			rootID = ns.Root.GetMntId()
		}
		for _, me := range ns.Mounts {
			var em format.ExternalMount
			if key := me.GetExtKey(); key != "" && !seen[key] {
				seen[key] = true
				var err error
				if em, err = c.source(me); err != nil {
					return nil, nil, err
				}
				out = append(out, em)
			}
			// The writer's runtime created the mount points on the
			// root filesystem; restore must too.
			if me.GetParentMntId() == rootID && me.GetMountpoint() != "/" {
				targets[me.GetMountpoint()] = em.Source
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, targets, nil
}

func (c *Checkpoint) source(me *mnt.MntEntry) (format.ExternalMount, error) {
	key, mp := me.GetExtKey(), me.GetMountpoint()
	em := format.ExternalMount{Key: key}
	fst := mnt.Fstype(me.GetFstype())
	switch {
	case fst == mnt.Fstype_CGROUP || fst == mnt.Fstype_CGROUP2:
		em.Kind = format.MountCgroup
		em.CgroupPath = me.GetRoot()
		em.Hierarchy = hierarchyOfMount(mp, fst == mnt.Fstype_CGROUP2)
		return em, nil
	case key == os.DevNull || c.masked(mp):
		em.Kind, em.Source = format.MountBind, os.DevNull
		return em, nil
	}
	em.Kind = format.MountBind
	if name, ok := Generated[mp]; ok {
		em.Source = filepath.Join(c.Dir, "userdata", name)
		return em, nil
	}
	for _, m := range c.Spec.Mounts {
		if path.Clean(m.Destination) == path.Clean(mp) && m.Source != "" {
			em.Source = m.Source
			return em, nil
		}
	}
	return em, errdefs.Newf(errdefs.ErrInvalidArchive, "the container's mount %s (external key %q) has no known source: the archive's %s does not list it", mp, key, format.SpecDumpFile)
}

func (c *Checkpoint) masked(mp string) bool {
	if c.Spec.Linux == nil {
		return false
	}
	for _, p := range c.Spec.Linux.MaskedPaths {
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

// kubeName names a container CRI-O ran for the kubelet as the kubelet names
// its checkpoint (checkpoint-POD_NAMESPACE-CONTAINER-TIME.tar):
// "POD_NAMESPACE-CONTAINER", which tells a pod's containers apart where
// config.dump's "k8s_CONTAINER_POD_NAMESPACE_UID_ATTEMPT" is unwieldy.
// It is "" for an archive of any other engine.
func kubeName(ann map[string]string) string {
	if ann[format.AnnotationManager] != format.ManagerCRIO {
		return ""
	}
	var meta struct {
		Name string `json:"name"`
	}
	ctr := ann["io.kubernetes.container.name"]
	if json.Unmarshal([]byte(ann["io.kubernetes.cri-o.Metadata"]), &meta) == nil && meta.Name != "" {
		ctr = meta.Name
	}
	pod, ns := ann["io.kubernetes.pod.name"], ann["io.kubernetes.pod.namespace"]
	if ctr == "" || pod == "" || ns == "" {
		return ""
	}
	return pod + "_" + ns + "-" + ctr
}
