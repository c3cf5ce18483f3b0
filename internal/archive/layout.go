package archive

import (
	"github.com/crtool/crtool/format"
)

// topLevelOrder is the order in which Write puts the top-level members that
// exist. Podman's order comes first so that crtool archives look like
// Podman's; metadata precedes checkpoint/ so that readers needing only
// metadata can stop early. Anything else follows, sorted.
var topLevelOrder = []string{
	format.ArtifactsDir,
	format.DevShmCheckpointTar,
	format.ConfigDumpFile,
	format.SpecDumpFile,
	format.NetworkStatusFile,
	format.StatsDumpFile,
	format.CtrLogFile,
	format.MetadataFile,
	format.BindMountsFile,
	format.CheckpointDir,
	format.RootfsDiffTar,
	format.DeletedFilesFile,
}

// topLevelDirs are the known members that must be directories; the other
// known members must be regular files.
var topLevelDirs = map[string]bool{format.ArtifactsDir: true, format.CheckpointDir: true}
