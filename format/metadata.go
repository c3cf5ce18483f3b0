package format

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// MetadataVersion is the version of crtool.json this build writes; readers
// refuse newer versions rather than misread them.
const MetadataVersion = 1

// Metadata is crtool's own record of a dump (crtool.json): what restore needs
// beyond CRIU's images to put the container back where it was.
type Metadata struct {
	Version     int       `json:"version"`
	CreatedBy   string    `json:"createdBy"` // "crtool <version>"
	Checkpoint  time.Time `json:"checkpointedAt"`
	Hostname    string    `json:"hostname"`
	Kernel      string    `json:"kernel"`
	CRIUVersion string    `json:"criuVersion"`
	// CPU is the dumping host's CPU; absent in archives of older crtool
	// versions.
	CPU *CPUFeatures `json:"cpu,omitempty"`

	Container ContainerInfo `json:"container"`
	Cgroups   CgroupInfo    `json:"cgroups"`
	// Namespaces of the container's init, by type ("net", "pid", ...).
	Namespaces map[string]Namespace `json:"namespaces"`
	Mounts     []ExternalMount      `json:"externalMounts,omitempty"`
	Files      []ExternalFile       `json:"externalFiles,omitempty"`
	Network    *Config              `json:"network,omitempty"`
	// NetworkLock names the nftables table that keeps the dumped
	// container's network namespace silent until a restore lifts it.
	NetworkLock string `json:"networkLock,omitempty"`
	// Ports are the container's published ports, which restore sets up
	// again in the host's network namespace.
	Ports   []PortMapping `json:"ports,omitempty"`
	Options DumpOptions   `json:"options"`
	Stats   DumpStats     `json:"stats"`
}

// CPUFeatures are what a CPU offers the programs that start on it: the
// instruction set extensions that glibc's ifuncs and other runtimes choose
// code for, once, at start, and the XSAVE state components its kernel
// enabled. A restored process keeps the code it chose, so restore compares
// these with the destination's.
type CPUFeatures struct {
	Arch  string `json:"arch"`            // GOARCH: "amd64"
	Model string `json:"model,omitempty"` // CPUID brand string
	// Flags are the extensions the kernel lets programs use, lowercase as
	// /proc/cpuinfo and GLIBC_TUNABLES spell them ("avx2", "avx512f",
	// "sse4_2").
	Flags []string `json:"flags"`
	// XCR0 is the XSAVE feature mask the kernel enabled (bit 2 AVX, bits
	// 5-7 AVX-512, 9 PKRU, ...); 0 without XSAVE.
	XCR0 uint64 `json:"xcr0,omitempty"`
}

// ContainerInfo identifies the dumped container.
type ContainerInfo struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Runtime string   `json:"runtime,omitempty"` // "runc", "crun" or "" when unknown
	Bundle  string   `json:"bundle,omitempty"`
	Root    string   `json:"root"` // host path of the root filesystem
	PID     int      `json:"pid"`  // host PID of init at dump time
	Command []string `json:"command,omitempty"`
	Image   string   `json:"image,omitempty"`
	ImageID string   `json:"imageID,omitempty"`
	// RootFromImage says the root filesystem is Image plus the archive's
	// rootfs-diff.tar and deleted.files, so restore can rebuild it on an
	// overlay of the image when Root is gone.
	RootFromImage bool `json:"rootFromImage,omitempty"`
}

// CgroupInfo records where the container's cgroups were.
type CgroupInfo struct {
	Layout  string            `json:"layout"` // v1, v2 or hybrid
	Paths   map[string]string `json:"paths"`  // hierarchy ("" = unified) -> path
	Freezer string            `json:"freezer"`
}

// Namespace is one namespace of the container's init.
type Namespace struct {
	Inode uint64 `json:"inode"`
	// Path is a persistent name of the namespace when one was found
	// (/run/netns/NAME); inode numbers are reused, so never rely on them alone.
	Path string `json:"path,omitempty"`
	// Shared is true when the container shares the namespace with the host.
	Shared bool `json:"shared,omitempty"`
}

// Mount kinds.
const (
	MountBind   = "bind"
	MountCgroup = "cgroup"
)

// ExternalMount is a mount whose source lies outside the container: CRIU
// records only its key, and restore must say where to bind it from.
type ExternalMount struct {
	Key    string `json:"key"` // mount point inside the container, CRIU's key
	Kind   string `json:"kind"`
	Source string `json:"source,omitempty"` // host path at dump time (bind)
	// Hierarchy and CgroupPath locate a cgroup mount's source relative to
	// the container's cgroup, so restore can follow a moved cgroup.
	Hierarchy  string `json:"hierarchy,omitempty"`
	CgroupPath string `json:"cgroupPath,omitempty"`
	FSType     string `json:"fstype,omitempty"`
	// Content is the archive member holding the mount's content when its
	// source is private to the container (a file the runtime generated for
	// it in its state directory, the container's /dev/shm): restore
	// recreates it rather than expecting it on the host. A directory's
	// content is a tar (Dir).
	Content string `json:"content,omitempty"`
	Dir     bool   `json:"dir,omitempty"`
	// Exported marks a volume whose content the archive carries (dump
	// --export-volumes): restore binds Source when it exists and recreates
	// the content only on a host that lacks it.
	Exported bool `json:"exported,omitempty"`
}

// File kinds.
const (
	FilePipe = "pipe"
	FileReg  = "file"
)

// ExternalFile is a descriptor that leads outside the container (its stdio,
// typically): restore hands CRIU a replacement under Key.
type ExternalFile struct {
	Key   string  `json:"key"` // CRIU's key: "pipe:[N]" or "file[MNT:INO]"
	Kind  string  `json:"kind"`
	Path  string  `json:"path,omitempty"` // host path of a file
	Flags int     `json:"flags"`          // open(2) flags of the first user
	Users []FdRef `json:"users"`
}

// FdRef is one descriptor of one process.
type FdRef struct {
	PID int `json:"pid"`
	Fd  int `json:"fd"`
}

// DumpOptions are the options of the dump that matter to restore.
type DumpOptions struct {
	LeaveRunning   bool `json:"leaveRunning"`
	TCPEstablished bool `json:"tcpEstablished"`
	FileLocks      bool `json:"fileLocks"`
}

// DumpStats are crtool's own timings of a dump, in microseconds like CRIU's.
type DumpStats struct {
	FreezingTime int64 `json:"freezingTime"`
	FrozenTime   int64 `json:"frozenTime"`
	CRIUTime     int64 `json:"criuTime"`
	WriteTime    int64 `json:"archiveWriteTime,omitempty"`
	TotalTime    int64 `json:"totalTime"`
}

// WriteMetadata writes m as dir/crtool.json.
func WriteMetadata(dir string, m *Metadata) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", MetadataFile, err)
	}
	p := filepath.Join(dir, MetadataFile)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// ReadMetadata reads dir/crtool.json. It returns os.ErrNotExist (wrapped)
// for archives that crtool did not write.
func ReadMetadata(dir string) (*Metadata, error) {
	b, err := ReadMetadataFile(filepath.Join(dir, MetadataFile), MetadataFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", MetadataFile, err)
	}
	if err != nil {
		return nil, err
	}
	return ParseMetadata(b)
}

// ParseMetadata decodes crtool.json.
func ParseMetadata(b []byte) (*Metadata, error) {
	var m Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", MetadataFile, err)
	}
	if m.Version > MetadataVersion {
		return nil, fmt.Errorf("%s version %d is newer than this crtool understands (%d): upgrade crtool", MetadataFile, m.Version, MetadataVersion)
	}
	return &m, nil
}
