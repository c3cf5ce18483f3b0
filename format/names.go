package format

import (
	"strings"
)

// Members of a checkpoint archive, as Podman's `container checkpoint --export`
// writes them, plus crtool's and CRI-O's additions.
const (
	ArtifactsDir        = "artifacts"
	DevShmCheckpointTar = "devshm-checkpoint.tar"
	ConfigDumpFile      = "config.dump"
	SpecDumpFile        = "spec.dump"
	NetworkStatusFile   = "network.status"
	StatsDumpFile       = "stats-dump"
	CtrLogFile          = "ctr.log"
	CheckpointDir       = "checkpoint"
	RootfsDiffTar       = "rootfs-diff.tar"
	DeletedFilesFile    = "deleted.files"

	// MetadataFile is crtool's own metadata; Podman ignores unknown members.
	MetadataFile = "crtool.json"
	// RootfsTar is the container's whole root filesystem (dump
	// --with-rootfs), in RootfsDiffTar's format: restore needs no image.
	RootfsTar = "rootfs.tar"
	// BindMountsFile appears in archives written by CRI-O for the kubelet.
	BindMountsFile = "bind.mounts"

	// DescriptorsFile lives inside CheckpointDir: runc writes it next to
	// CRIU's images to rewire the init process's stdio on restore.
	DescriptorsFile = "descriptors.json"
)

// Files inside CheckpointDir that CRIU writes and crtool reads by name.
const (
	InventoryImage = "inventory.img"
	StatsRestore   = "stats-restore"
)

// NetnsKey is the name under which the container's network namespace is
// external to CRIU: dump declares it, restore passes the namespace under it.
const NetnsKey = "extRootNetNS"

// DefaultPodmanNetwork is the network under which network.status lists the
// container's interfaces, and that Podman's import attaches it to: Podman's
// default network.
const DefaultPodmanNetwork = "podman"

// Stdio, given as an archive's path, means standard input or output.
const Stdio = "-"

// Annotations of spec.dump that tell which engine's layout an archive
// follows: checkpointctl takes config.dump's name and creation time only
// for ManagerLibpod, whose layout crtool writes.
const (
	AnnotationManager = "io.container.manager"
	ManagerLibpod     = "libpod"
	ManagerCRIO       = "cri-o"
)

// IsPagesImage reports whether name, a file name inside CheckpointDir, is
// one of CRIU's memory page images, which hold nearly all of a checkpoint's
// bytes.
func IsPagesImage(name string) bool {
	return strings.HasPrefix(name, "pages-") && strings.HasSuffix(name, ".img")
}

// ShortID is the first 12 characters of a container ID, as engines show it.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
