package inspect

import (
	"time"

	"github.com/crtool/crtool/format"
)

// Report is everything Collect found. Both renderers work from it alone, and
// its JSON form (RenderJSON) is crtool's stable inspect format: fields are
// only ever added. Sections that were not asked for are left out (nil).
type Report struct {
	Source    Source     `json:"source"`
	Container Container  `json:"container"`
	CRIU      CRIU       `json:"criu"`
	Crtool    *Crtool    `json:"crtool,omitempty"` // crtool.json, in archives crtool wrote
	Sizes     Sizes      `json:"sizes"`
	Processes []Process  `json:"processes,omitempty"` // --ps-tree: in pstree.img order, parents first
	Mounts    *Mounts    `json:"mounts,omitempty"`    // --mounts
	Network   *Network   `json:"network,omitempty"`   // --network
	External  []External `json:"externalFiles,omitempty"`
	// Notes say what could not be shown and why, in plain words.
	Notes []string `json:"notes,omitempty"`
}

// Source kinds.
const (
	SourceArchive   = "archive"   // a tar archive, any compression
	SourceDirectory = "directory" // an unpacked archive (has checkpoint/)
	SourceImages    = "images"    // a bare CRIU image directory (has inventory.img)
)

// Source is what was inspected.
type Source struct {
	Path        string `json:"path"` // as given; "-" is standard input
	Kind        string `json:"kind"`
	Compression string `json:"compression,omitempty"` // archives: gzip, zstd or none
	// Complete is false when inspect stopped reading an archive at its first
	// memory pages image (crtool archives put everything else before them);
	// sizes of later members are then unknown. --sizes reads to the end.
	Complete  bool   `json:"complete"`
	StoppedAt string `json:"stoppedAt,omitempty"` // member inspect stopped at
}

// Engines that write checkpoint archives.
const (
	EngineCrtool     = "crtool"
	EnginePodman     = "Podman"
	EngineCRIO       = "CRI-O"
	EngineContainerd = "containerd"
	EngineCRIU       = "CRIU" // a bare image directory
	EngineUnknown    = "unknown"
)

// Container identifies the checkpointed container.
type Container struct {
	Name    string `json:"name,omitempty"`
	ID      string `json:"id,omitempty"`
	Image   string `json:"image,omitempty"`
	ImageID string `json:"imageID,omitempty"`
	Runtime string `json:"runtime,omitempty"`
	Engine  string `json:"engine"`
	// Manager is the spec.dump annotation io.container.manager.
	Manager   string     `json:"manager,omitempty"`
	Pod       string     `json:"pod,omitempty"`       // Kubernetes pod (CRI-O, containerd)
	Namespace string     `json:"namespace,omitempty"` // Kubernetes namespace
	Hostname  string     `json:"hostname,omitempty"`  // the container's (spec.dump)
	Command   []string   `json:"command,omitempty"`
	Created   *time.Time `json:"created,omitempty"`
	// Checkpointed is when the dump was made; CheckpointedFrom says where
	// that came from (crtool.json, config.dump, or a member's mtime).
	Checkpointed     *time.Time `json:"checkpointed,omitempty"`
	CheckpointedFrom string     `json:"checkpointedFrom,omitempty"`
	IP               string     `json:"ip,omitempty"`
	MAC              string     `json:"mac,omitempty"`
	// Annotations of spec.dump (--metadata).
	Annotations map[string]string `json:"annotations,omitempty"`
}

// CRIU describes the dump as CRIU recorded it.
type CRIU struct {
	// Version is known only from crtool.json; other engines do not record it.
	Version      string `json:"version,omitempty"`
	ImageVersion uint32 `json:"imageVersion,omitempty"` // inventory.img
	LSM          string `json:"lsm,omitempty"`          // inventory.img
	// DumpStats come from stats-dump; nil when the archive has none.
	DumpStats *DumpStats `json:"dumpStats,omitempty"`
}

// DumpStats are CRIU's dump statistics (stats-dump); times in microseconds.
type DumpStats struct {
	FreezingTime         uint32 `json:"freezingTime"`
	FrozenTime           uint32 `json:"frozenTime"`
	MemdumpTime          uint32 `json:"memdumpTime"`
	MemwriteTime         uint32 `json:"memwriteTime"`
	PagesScanned         uint64 `json:"pagesScanned"`
	PagesSkippedParent   uint64 `json:"pagesSkippedParent"`
	PagesWritten         uint64 `json:"pagesWritten"`
	PagesLazy            uint64 `json:"pagesLazy"`
	ShpagesScanned       uint64 `json:"shpagesScanned,omitempty"`
	ShpagesSkippedParent uint64 `json:"shpagesSkippedParent,omitempty"`
	ShpagesWritten       uint64 `json:"shpagesWritten,omitempty"`
}

// Crtool is what crtool.json adds: how and where the dump was made.
type Crtool struct {
	CreatedBy       string `json:"createdBy"`
	MetadataVersion int    `json:"metadataVersion"`
	Host            string `json:"host,omitempty"`
	Kernel          string `json:"kernel,omitempty"`
	// CPU is the dumping CPU: restore refuses hosts that lack its features.
	CPU            *format.CPUFeatures `json:"cpu,omitempty"`
	Root           string              `json:"root,omitempty"` // host path of the root filesystem
	PID            int                 `json:"pid,omitempty"`  // host PID of init at dump time
	Bundle         string              `json:"bundle,omitempty"`
	LeaveRunning   bool                `json:"leaveRunning"`
	TCPEstablished bool                `json:"tcpEstablished"`
	// Stats are crtool's own timings, in microseconds.
	Stats      CrtoolStats       `json:"stats"`
	Cgroups    map[string]string `json:"cgroups,omitempty"` // hierarchy ("" = unified) -> path
	Namespaces map[string]string `json:"namespaces,omitempty"`
}

// CrtoolStats are crtool's timings of a dump, in microseconds.
type CrtoolStats struct {
	FreezingTime int64 `json:"freezingTime"`
	FrozenTime   int64 `json:"frozenTime"`
	CRIUTime     int64 `json:"criuTime"`
	WriteTime    int64 `json:"archiveWriteTime,omitempty"`
	TotalTime    int64 `json:"totalTime"`
}

// Sizes are in bytes. A nil size was not read (see Source.Complete) or does
// not apply (Archive for a directory).
type Sizes struct {
	Archive *int64 `json:"archive"` // the archive file as stored
	// Checkpoint is the sum of the files in checkpoint/ (CRIU's images).
	Checkpoint  *int64 `json:"checkpoint"`
	MemoryPages *int64 `json:"memoryPages"` // checkpoint/pages-*.img
	// MemoryPagesEstimate is pages written × page size from stats-dump,
	// given when MemoryPages was not read.
	MemoryPagesEstimate *int64 `json:"memoryPagesEstimate,omitempty"`
	RootfsDiff          *int64 `json:"rootfsDiff,omitempty"` // rootfs-diff.tar, when present
	DeletedFiles        int    `json:"deletedFiles,omitempty"`
}

// Process states from core-*.img.
const (
	StateAlive   = "alive"
	StateDead    = "dead"
	StateStopped = "stopped"
	StateZombie  = "zombie"
)

// Process is one task of pstree.img; PIDs are those inside the container.
type Process struct {
	PID     uint32   `json:"pid"`
	PPID    uint32   `json:"ppid"`
	PGID    uint32   `json:"pgid"`
	SID     uint32   `json:"sid"`
	Threads []uint32 `json:"threads,omitempty"`
	Comm    string   `json:"comm"`
	State   string   `json:"state"`
	UID     *uint32  `json:"uid,omitempty"`
	GID     *uint32  `json:"gid,omitempty"`
	// Cmdline and Env are read from the memory pages (--cmdline, --env).
	Cmdline []string `json:"cmdline,omitempty"`
	Env     []string `json:"env,omitempty"`
	// Cwd, Root and Files come with --files.
	Cwd     string   `json:"cwd,omitempty"`
	Root    string   `json:"root,omitempty"`
	Files   []File   `json:"files,omitempty"`
	Sockets []Socket `json:"sockets,omitempty"` // --sockets
	Memory  *Memory  `json:"memory,omitempty"`  // --memory
}

// File is one open file descriptor.
type File struct {
	Fd   uint32 `json:"fd"`
	Type string `json:"type"` // CRIU's kind: REG, PIPE, FIFO, INETSK, UNIXSK, EVENTFD, ...
	// Path is the file's path, or what /proc/PID/fd would show for it:
	// pipe:[N], socket:[N], anon_inode:[eventfd], ...
	Path string `json:"path"`
	// Detail describes a socket: "tcp LISTEN 0.0.0.0:80".
	Detail string `json:"detail,omitempty"`
	Mode   string `json:"mode,omitempty"` // r, w or rw, "+append" for O_APPEND
	// External is set for descriptors that lead outside the container
	// (recorded by crtool, or runc's descriptors.json for init's stdio).
	External bool `json:"external,omitempty"`
}

// Socket is a socket behind a descriptor.
type Socket struct {
	Fd     uint32 `json:"fd"`
	Family string `json:"family"`          // unix, inet, inet6, packet, netlink
	Proto  string `json:"proto,omitempty"` // tcp, udp, ...
	Type   string `json:"type,omitempty"`  // stream, dgram, seqpacket, raw
	// State uses the kernel's names (LISTEN, ESTABLISHED, ...); an
	// unconnected UDP socket is UNCONN.
	State  string `json:"state,omitempty"`
	Local  string `json:"local,omitempty"`  // addr:port, [addr6]:port, a unix path, @abstract
	Remote string `json:"remote,omitempty"` // the peer's addr:port
	Inode  uint32 `json:"inode"`
	Peer   uint32 `json:"peer,omitempty"` // a unix socket's peer, by inode
	// InQueue and OutQueue are the bytes of an established TCP connection's
	// queues (tcp-stream-*.img).
	InQueue  *uint32 `json:"inQueue,omitempty"`
	OutQueue *uint32 `json:"outQueue,omitempty"`
}

// Memory is a process's address space (mm-*.img, pagemap-*.img).
type Memory struct {
	Exe string `json:"exe,omitempty"`
	// Mapped is the sum of the mappings' sizes; Dumped is what CRIU wrote
	// to the pages image for this process.
	Mapped     uint64    `json:"mapped"`
	Dumped     uint64    `json:"dumped"`
	PagesImage string    `json:"pagesImage,omitempty"`
	Mappings   []Mapping `json:"mappings"`
}

// Mapping is one VMA. Addresses are hexadecimal strings (0x...): JSON
// numbers lose precision above 2^53.
type Mapping struct {
	Start  string `json:"start"`
	End    string `json:"end"`
	Size   uint64 `json:"size"`
	Prot   string `json:"prot"` // like /proc/PID/maps: r-xp
	Offset uint64 `json:"offset,omitempty"`
	// Name is the mapped file or [heap], [stack], [vdso], [vvar],
	// [vsyscall], [anon], [shmem], [sysvipc].
	Name   string `json:"name,omitempty"`
	Dumped uint64 `json:"dumped"` // bytes of this mapping in the pages image
}

// Mounts are the container's mounts from every source that records them.
type Mounts struct {
	Spec       []SpecMount     `json:"spec,omitempty"`       // spec.dump
	CRIU       []CRIUMount     `json:"criu,omitempty"`       // mountpoints-*.img
	External   []ExternalMount `json:"external,omitempty"`   // crtool.json
	BindMounts []BindMount     `json:"bindMounts,omitempty"` // CRI-O's bind.mounts
}

// SpecMount is a mount of the OCI spec the runtime ran with.
type SpecMount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type,omitempty"`
	Source      string   `json:"source,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// CRIUMount is a mount of the container's mount namespace as CRIU saw it.
type CRIUMount struct {
	ID         uint32 `json:"id"`
	Parent     uint32 `json:"parent"`
	Mountpoint string `json:"mountpoint"`
	FSType     string `json:"fstype"`
	Source     string `json:"source,omitempty"`
	Root       string `json:"root,omitempty"` // path inside the source filesystem
	ReadOnly   bool   `json:"readOnly,omitempty"`
	// ExternalKey is set for mounts that restore must bind from outside.
	ExternalKey string `json:"externalKey,omitempty"`
}

// ExternalMount is a mount crtool recorded as leading outside the container.
type ExternalMount struct {
	Key    string `json:"key"`
	Kind   string `json:"kind"`
	Source string `json:"source,omitempty"`
	// Content is the archive member holding a private mount's content.
	Content string `json:"content,omitempty"`
}

// BindMount is an entry of CRI-O's bind.mounts.
type BindMount struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	FileType    string `json:"fileType,omitempty"`
	Permissions uint32 `json:"permissions,omitempty"`
}

// External is a descriptor crtool recorded as leading outside the
// container (--files).
type External struct {
	Key   string   `json:"key"`
	Kind  string   `json:"kind"`
	Path  string   `json:"path,omitempty"`
	Users []string `json:"users"` // "pid/fd"
}

// Network is the container's network as the archive records it.
type Network struct {
	// Captured is what crtool captured of the network namespace.
	Captured *format.Config `json:"captured,omitempty"`
	// Ports are the published ports restore sets up again.
	Ports []format.PortMapping `json:"ports,omitempty"`
	// Podman is network.status: network name -> interfaces.
	Podman map[string]PodmanNetwork `json:"podman,omitempty"`
	// CRIUExternalKey is set when CRIU treated the namespace as external
	// (netns-*.img): the engine, not CRIU, recreates it.
	CRIUExternalKey string `json:"criuExternalKey,omitempty"`
}

// PodmanNetwork is one network of network.status.
type PodmanNetwork struct {
	Interfaces map[string]PodmanInterface `json:"interfaces"`
}

// PodmanInterface is one interface of a Podman network.
type PodmanInterface struct {
	Subnets []PodmanSubnet `json:"subnets,omitempty"`
	MAC     string         `json:"mac,omitempty"`
}

// PodmanSubnet is an address of an interface.
type PodmanSubnet struct {
	IPNet   string `json:"ipnet"`
	Gateway string `json:"gateway,omitempty"`
}
