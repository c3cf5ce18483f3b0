package inspect

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crtool/crtool/format"
)

// Options choose what Collect reads beyond the summary. Cmdline, Env,
// Files, Sockets, Memory and PID imply PsTree.
type Options struct {
	PsTree   bool
	Cmdline  bool // read each process's command line from its memory pages
	Env      bool // read each process's environment from its memory pages
	Files    bool
	Sockets  bool
	Memory   bool
	Mounts   bool
	Network  bool
	Metadata bool // spec.dump's annotations
	// Sizes reads an archive to its end even when crtool wrote it and the
	// rest could be skipped: the memory pages' sizes come from there.
	Sizes bool
	// PID limits the process tree to this process and its descendants.
	PID uint32
}

// All returns options that show everything.
func All() Options {
	return Options{PsTree: true, Cmdline: true, Env: true, Files: true, Sockets: true, Memory: true,
		Mounts: true, Network: true, Metadata: true, Sizes: true}
}

func (o Options) normalize() Options {
	if o.Cmdline || o.Env || o.Files || o.Sockets || o.Memory || o.PID != 0 {
		o.PsTree = true
	}
	return o
}

// Collect reads the checkpoint at path — an archive of any compression,
// "-" for one on standard input, an unpacked archive or a CRIU image
// directory — and reports what opts ask for. It never extracts anything
// to disk and needs no CRIU binary.
func Collect(ctx context.Context, path string, opts Options) (*Report, error) {
	opts = opts.normalize()
	if path == "-" {
		return CollectReader(ctx, os.Stdin, "-", opts)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	if fi.IsDir() {
		c, err := readDir(path, opts)
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", path, err)
		}
		return report(c, path, nil, opts)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	defer f.Close()
	c, _, err := readArchive(ctx, f, opts)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	size := fi.Size()
	return report(c, path, &size, opts)
}

// CollectReader is Collect for an archive read from r; name is what the
// report and errors call it.
func CollectReader(ctx context.Context, r io.Reader, name string, opts Options) (*Report, error) {
	opts = opts.normalize()
	c, n, err := readArchive(ctx, r, opts)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", name, err)
	}
	var size *int64
	if c.stoppedAt == "" {
		size = &n
	}
	return report(c, name, size, opts)
}

func report(c *contents, path string, archiveSize *int64, opts Options) (*Report, error) {
	r, err := build(c, path, archiveSize, opts)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	return r, nil
}

// build turns what was read into the report, one section at a time.
func build(c *contents, path string, archiveSize *int64, opts Options) (*Report, error) {
	if c.kind == SourceArchive && !c.has(format.MetadataFile) && !c.has(format.ConfigDumpFile) && !c.has(checkpointPrefix+"inventory.img") {
		return nil, fmt.Errorf("%w: no %s, %s or %s/inventory.img in the archive", ErrNotCheckpoint,
			format.MetadataFile, format.ConfigDumpFile, format.CheckpointDir)
	}
	r := &Report{Source: Source{Path: path, Kind: c.kind, Compression: c.compression, Complete: c.stoppedAt == "", StoppedAt: c.stoppedAt}}
	md, err := readMetadata(c)
	if err != nil {
		return nil, err
	}
	r.Container = container(c, md, opts)
	if md.crtool != nil {
		r.Crtool = crtoolInfo(md.crtool)
		r.CRIU.Version = md.crtool.CRIUVersion
	}
	if err := criuInfo(c, r); err != nil {
		return nil, err
	}
	r.Sizes = sizes(c, archiveSize, md, r)
	if c.stoppedAt != "" {
		r.Notes = append(r.Notes, fmt.Sprintf("stopped reading at %s (everything else comes before it in archives crtool writes): sizes of the memory pages and later members not read; --sizes reads them", c.stoppedAt))
	}
	if opts.PsTree {
		procs, notes, err := processes(c, md, opts)
		if err != nil {
			return nil, err
		}
		r.Processes = procs
		r.Notes = append(r.Notes, notes...)
	}
	if opts.Files && md.crtool != nil {
		r.External = externalFiles(md.crtool)
	}
	if opts.Mounts {
		if r.Mounts, err = mounts(c, md); err != nil {
			return nil, err
		}
	}
	if opts.Network {
		if r.Network, err = network(c, md); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// configDump is what inspect reads of config.dump (Podman's libpod
// ContainerConfig, or CRI-O's reduced copy of it).
type configDump struct {
	ID               string    `json:"id"`
	Name             string    `json:"name"`
	RootfsImageName  string    `json:"rootfsImageName"`
	RootfsImageID    string    `json:"rootfsImageID"`
	RawImageName     string    `json:"RawImageName"`
	Runtime          string    `json:"runtime"`
	Command          []string  `json:"command"`
	CreatedTime      time.Time `json:"createdTime"`
	CheckpointedTime time.Time `json:"checkpointedTime"`
}

// podmanStatus is network.status: network name -> netavark StatusBlock.
type podmanStatus map[string]struct {
	Interfaces map[string]struct {
		Subnets []struct {
			IPNet   string `json:"ipnet"`
			Gateway string `json:"gateway"`
		} `json:"subnets"`
		MAC string `json:"mac_address"`
	} `json:"interfaces"`
}

// bindMount is an entry of CRI-O's bind.mounts.
type bindMount struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	FileType    string `json:"file_type"`
	Permissions uint32 `json:"permissions"`
}

// metadata is the decoded JSON members; each is nil when absent.
type metadata struct {
	crtool      *format.Metadata
	config      *configDump
	spec        *specs.Spec
	netStatus   podmanStatus
	bindMounts  []bindMount
	deleted     []string
	descriptors []string
}

func readMetadata(c *contents) (*metadata, error) {
	md := &metadata{}
	if b, ok := c.data(format.MetadataFile); ok {
		m, err := format.ParseMetadata(b)
		if err != nil {
			return nil, memberErr(format.MetadataFile, fmt.Errorf("%w: %w", ErrCorruptMetadata, err))
		}
		md.crtool = m
	}
	fields := []struct {
		name string
		dst  any
	}{
		{format.ConfigDumpFile, &md.config},
		{format.SpecDumpFile, &md.spec},
		{format.NetworkStatusFile, &md.netStatus},
		{format.BindMountsFile, &md.bindMounts},
		{format.DeletedFilesFile, &md.deleted},
		{checkpointPrefix + format.DescriptorsFile, &md.descriptors},
	}
	for _, f := range fields {
		b, ok := c.data(f.name)
		if !ok {
			continue
		}
		if err := json.Unmarshal(b, f.dst); err != nil {
			return nil, memberErr(f.name, fmt.Errorf("%w: %w", ErrCorruptMetadata, err))
		}
	}
	return md, nil
}

// Annotations of spec.dump that tell who made the container.
const (
	annotationManager    = "io.container.manager"
	managerPodman        = "libpod"
	managerCRIO          = "cri-o"
	annotationCRIOMeta   = "io.kubernetes.cri-o.Metadata"
	annotationCRIOIP     = "io.kubernetes.cri-o.IP.0"
	annotationCRIOCreate = "io.kubernetes.cri-o.Created"
	annotationPodName    = "io.kubernetes.pod.name"
	annotationPodNS      = "io.kubernetes.pod.namespace"
	annotationCRIName    = "io.kubernetes.cri.container-name"
	annotationCRIPod     = "io.kubernetes.cri.sandbox-name"
	annotationCRIPodNS   = "io.kubernetes.cri.sandbox-namespace"
)

func container(c *contents, md *metadata, opts Options) Container {
	var ct Container
	var ann map[string]string
	if md.spec != nil {
		ann = md.spec.Annotations
		ct.Hostname = md.spec.Hostname
		if md.spec.Process != nil {
			ct.Command = md.spec.Process.Args
		}
	}
	ct.Manager = ann[annotationManager]
	switch {
	case md.crtool != nil:
		ct.Engine = EngineCrtool
	case ct.Manager == managerPodman:
		ct.Engine = EnginePodman
	case ct.Manager == managerCRIO || c.has(format.BindMountsFile):
		ct.Engine = EngineCRIO
	case ann[annotationCRIName] != "":
		ct.Engine = EngineContainerd
	case c.kind == SourceImages:
		ct.Engine = EngineCRIU
	default:
		ct.Engine = EngineUnknown
	}
	if cfg := md.config; cfg != nil {
		ct.Name, ct.ID, ct.Runtime = cfg.Name, cfg.ID, cfg.Runtime
		ct.Image, ct.ImageID = firstOf(cfg.RootfsImageName, cfg.RawImageName), cfg.RootfsImageID
		if len(cfg.Command) > 0 && len(ct.Command) == 0 {
			ct.Command = cfg.Command
		}
		ct.Created = timePtr(cfg.CreatedTime)
		if t := timePtr(cfg.CheckpointedTime); t != nil {
			ct.Checkpointed, ct.CheckpointedFrom = t, format.ConfigDumpFile
		}
	}
	switch ct.Engine {
	case EngineCRIO:
		var meta struct {
			Name string `json:"name"`
		}
		if json.Unmarshal([]byte(ann[annotationCRIOMeta]), &meta) == nil && meta.Name != "" {
			ct.Name = meta.Name
		}
		ct.Pod, ct.Namespace, ct.IP = ann[annotationPodName], ann[annotationPodNS], ann[annotationCRIOIP]
		if t, err := time.Parse(time.RFC3339Nano, ann[annotationCRIOCreate]); err == nil && ct.Created == nil {
			ct.Created = &t
		}
	case EngineContainerd:
		ct.Name = firstOf(ann[annotationCRIName], ct.Name)
		ct.Pod, ct.Namespace = ann[annotationCRIPod], ann[annotationCRIPodNS]
	}
	if m := md.crtool; m != nil {
		ct.Name = firstOf(m.Container.Name, ct.Name)
		ct.ID = firstOf(m.Container.ID, ct.ID)
		ct.Image = firstOf(m.Container.Image, ct.Image)
		ct.ImageID = firstOf(m.Container.ImageID, ct.ImageID)
		ct.Runtime = firstOf(m.Container.Runtime, ct.Runtime)
		if len(m.Container.Command) > 0 {
			ct.Command = m.Container.Command
		}
		if t := timePtr(m.Checkpoint); t != nil {
			ct.Checkpointed, ct.CheckpointedFrom = t, format.MetadataFile
		}
	}
	if ct.Checkpointed == nil {
		// CRIU writes inventory.img last but one; its mtime is when the
		// dump ended, to the second in a tar header.
		if m, ok := c.members[checkpointPrefix+"inventory.img"]; ok && !m.mtime.IsZero() {
			t := m.mtime.UTC()
			ct.Checkpointed, ct.CheckpointedFrom = &t, "mtime of "+checkpointPrefix+"inventory.img"
		}
	}
	ct.IP, ct.MAC = address(md, ct.IP)
	if opts.Metadata && len(ann) > 0 {
		ct.Annotations = ann
	}
	return ct
}

// address picks the container's main IP address and MAC: the first global
// address crtool captured, else Podman's network.status.
func address(md *metadata, ip string) (string, string) {
	if md.crtool != nil && md.crtool.Network != nil {
		cfg := md.crtool.Network
		for _, a := range cfg.Addrs {
			if a.Scope != "global" || a.Auto {
				continue
			}
			for _, l := range cfg.Links {
				if l.Name == a.Link {
					return a.CIDR, l.MAC
				}
			}
			return a.CIDR, ""
		}
	}
	for _, net := range sortedKeys(md.netStatus) {
		ifaces := md.netStatus[net].Interfaces
		for _, name := range sortedKeys(ifaces) {
			iface := ifaces[name]
			if len(iface.Subnets) > 0 {
				return iface.Subnets[0].IPNet, iface.MAC
			}
		}
	}
	return ip, ""
}

func crtoolInfo(m *format.Metadata) *Crtool {
	ct := &Crtool{
		CreatedBy:       m.CreatedBy,
		MetadataVersion: m.Version,
		Host:            m.Hostname,
		Kernel:          m.Kernel,
		CPU:             m.CPU,
		Root:            m.Container.Root,
		PID:             m.Container.PID,
		Bundle:          m.Container.Bundle,
		LeaveRunning:    m.Options.LeaveRunning,
		TCPEstablished:  m.Options.TCPEstablished,
		Stats: CrtoolStats{
			FreezingTime: m.Stats.FreezingTime,
			FrozenTime:   m.Stats.FrozenTime,
			CRIUTime:     m.Stats.CRIUTime,
			WriteTime:    m.Stats.WriteTime,
			TotalTime:    m.Stats.TotalTime,
		},
	}
	if len(m.Cgroups.Paths) > 0 {
		ct.Cgroups = m.Cgroups.Paths
	}
	for typ, ns := range m.Namespaces {
		if ct.Namespaces == nil {
			ct.Namespaces = map[string]string{}
		}
		switch {
		case ns.Shared:
			ct.Namespaces[typ] = "host"
		case ns.Path != "":
			ct.Namespaces[typ] = ns.Path
		default:
			ct.Namespaces[typ] = fmt.Sprintf("%s:[%d]", typ, ns.Inode)
		}
	}
	return ct
}

func externalFiles(m *format.Metadata) []External {
	var out []External
	for _, f := range m.Files {
		e := External{Key: f.Key, Kind: f.Kind, Path: f.Path, Users: []string{}}
		for _, u := range f.Users {
			e.Users = append(e.Users, fmt.Sprintf("%d/%d", u.PID, u.Fd))
		}
		out = append(out, e)
	}
	return out
}

// lsmNames are inventory.img's lsmtype values.
var lsmNames = map[inventory.Lsmtype]string{
	inventory.Lsmtype_NO_LSM:   "none",
	inventory.Lsmtype_SELINUX:  "SELinux",
	inventory.Lsmtype_APPARMOR: "AppArmor",
}

// criuInfo reads inventory.img and stats-dump.
func criuInfo(c *contents, r *Report) error {
	name := checkpointPrefix + "inventory.img"
	if !c.has(name) {
		r.Notes = append(r.Notes, "no "+name+": the checkpoint is incomplete (restore needs it)")
	} else {
		msg, err := c.firstEntry(name, inventoryImage)
		if err != nil {
			return err
		}
		inv := msg.(*inventory.InventoryEntry)
		r.CRIU.ImageVersion = inv.GetImgVersion()
		if inv.Lsmtype != nil {
			r.CRIU.LSM = lsmNames[inv.GetLsmtype()]
		}
	}
	if !c.has(format.StatsDumpFile) {
		return nil
	}
	msg, err := c.firstEntry(format.StatsDumpFile, statsImage)
	if err != nil {
		return err
	}
	d := msg.(*stats.StatsEntry).GetDump()
	if d == nil {
		r.Notes = append(r.Notes, format.StatsDumpFile+" holds no dump statistics")
		return nil
	}
	r.CRIU.DumpStats = &DumpStats{
		FreezingTime:         d.GetFreezingTime(),
		FrozenTime:           d.GetFrozenTime(),
		MemdumpTime:          d.GetMemdumpTime(),
		MemwriteTime:         d.GetMemwriteTime(),
		PagesScanned:         d.GetPagesScanned(),
		PagesSkippedParent:   d.GetPagesSkippedParent(),
		PagesWritten:         d.GetPagesWritten(),
		PagesLazy:            d.GetPagesLazy(),
		ShpagesScanned:       d.GetShpagesScanned(),
		ShpagesSkippedParent: d.GetShpagesSkippedParent(),
		ShpagesWritten:       d.GetShpagesWritten(),
	}
	return nil
}

func sizes(c *contents, archive *int64, md *metadata, r *Report) Sizes {
	s := Sizes{Archive: archive, DeletedFiles: len(md.deleted)}
	var ckpt, pages int64
	for name, m := range c.members {
		if !strings.HasPrefix(name, checkpointPrefix) {
			continue
		}
		ckpt += m.size
		if isPages(name) {
			pages += m.size
		}
	}
	if m, ok := c.members[format.RootfsDiffTar]; ok {
		s.RootfsDiff = &m.size
	}
	if c.stoppedAt == "" {
		s.Checkpoint, s.MemoryPages = &ckpt, &pages
	} else if d := r.CRIU.DumpStats; d != nil {
		est := int64(d.PagesWritten+d.ShpagesWritten) * int64(c.pageSize)
		s.MemoryPagesEstimate = &est
	}
	return s
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
