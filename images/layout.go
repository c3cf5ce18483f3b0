package images

import "strings"

// Members of a checkpoint archive, as Podman's `container checkpoint --export`
// writes them (FORMAT.md section 2), plus crtool's and CRI-O's additions.
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
	// BindMountsFile appears in archives written by CRI-O for the kubelet.
	BindMountsFile = "bind.mounts"

	// DescriptorsFile lives inside CheckpointDir: runc writes it next to
	// CRIU's images to rewire the init process's stdio on restore.
	DescriptorsFile = "descriptors.json"
)

// topLevelOrder is the order in which Write puts the top-level members that
// exist. Podman's order comes first so that crtool archives look like
// Podman's; metadata precedes checkpoint/ so that readers needing only
// metadata can stop early. Anything else follows, sorted.
var topLevelOrder = []string{
	ArtifactsDir,
	DevShmCheckpointTar,
	ConfigDumpFile,
	SpecDumpFile,
	NetworkStatusFile,
	StatsDumpFile,
	CtrLogFile,
	MetadataFile,
	BindMountsFile,
	CheckpointDir,
	RootfsDiffTar,
	DeletedFilesFile,
}

// topLevelDirs are the known members that must be directories; the other
// known members must be regular files.
var topLevelDirs = map[string]bool{ArtifactsDir: true, CheckpointDir: true}

// isPagesImage reports whether name is one of CRIU's memory page images,
// which hold nearly all of a checkpoint's bytes and are written last.
func isPagesImage(name string) bool {
	return strings.HasPrefix(name, "pages-") && strings.HasSuffix(name, ".img")
}
