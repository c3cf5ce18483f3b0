package podman

import (
	"encoding/json"
	"fmt"
	"path"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crtool/crtool/format"
)

// Container is what config.dump records of a container crtool dumped.
type Container struct {
	Spec      *specs.Spec
	ID, Name  string
	Image     string // the image's name, "" when unknown
	ImageID   string
	Runtime   string // OCI runtime, "" when unknown
	OwnNetNS  bool   // the container has a network namespace of its own
	Network   string // the Podman network an import attaches it to
	Ports     []format.PortMapping
	CreatedAt time.Time
}

// ConfigDump builds config.dump for c as Podman 4.3 writes it, with what
// Podman's import and checkpointctl need.
func ConfigDump(c Container) ([]byte, error) {
	cfg := format.ContainerConfig{
		Spec:            c.Spec,
		ID:              c.ID,
		Name:            c.Name,
		RawImageName:    c.Image,
		RootfsImageName: c.Image,
		RootfsImageID:   c.ImageID,
		CreateNetNS:     c.OwnNetNS,
		StopSignal:      15,
		StopTimeout:     10,
		CreatedTime:     c.CreatedAt.UTC(),
		CgroupManager:   "cgroupfs",
		CgroupsMode:     "enabled",
		Runtime:         c.Runtime,
		Umask:           "0022",
		PortMappings:    format.PortsToPodman(c.Ports),
	}
	if cfg.Runtime == "" {
		// Podman needs the name of a configured OCI runtime; runc is the
		// one that restores CRIU images on the hosts crtool targets.
		cfg.Runtime = "runc"
	}
	if s := c.Spec; s != nil {
		if s.Process != nil {
			cfg.Command = s.Process.Args
		}
		if s.Linux != nil && s.Linux.CgroupsPath != "" {
			cfg.CgroupParent = path.Dir(s.Linux.CgroupsPath)
		}
	}
	if cfg.CreateNetNS {
		// Podman attaches an imported container to these networks; without
		// them it restores it into a namespace with no interface at all.
		cfg.NetworkMode = "bridge"
		cfg.Networks = map[string]format.NetworkAttachment{c.Network: {InterfaceName: "eth0"}}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", format.ConfigDumpFile, err)
	}
	return b, nil
}

// Descriptors encodes descriptors.json, which runc (and so Podman) reads on
// restore to reconnect the init's stdio: stdio[i] is what descriptor i
// pointed to, as /proc shows it.
func Descriptors(stdio [3]string) ([]byte, error) {
	b, err := json.Marshal(format.Descriptors(stdio[:]))
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", format.DescriptorsFile, err)
	}
	return b, nil
}
