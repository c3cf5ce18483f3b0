package dump

import (
	"encoding/json"
	"fmt"
	"path"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// containerConfig is the part of libpod's ContainerConfig (config.dump) that
// Podman and checkpointctl read from a checkpoint archive, in the key order
// Podman 4.3 writes.
type containerConfig struct {
	Spec            *specs.Spec              `json:"spec"`
	ID              string                   `json:"id"`
	Name            string                   `json:"name"`
	RawImageName    string                   `json:"RawImageName,omitempty"`
	RootfsImageID   string                   `json:"rootfsImageID,omitempty"`
	RootfsImageName string                   `json:"rootfsImageName,omitempty"`
	CreateNetNS     bool                     `json:"createNetNS"`
	Networks        map[string]podmanNetwork `json:"newNetworks,omitempty"`
	NetworkMode     string                   `json:"networkMode,omitempty"`
	Command         []string                 `json:"command,omitempty"`
	StopSignal      uint                     `json:"stopSignal"`
	StopTimeout     uint                     `json:"stopTimeout"`
	CreatedTime     time.Time                `json:"createdTime"`
	CgroupManager   string                   `json:"cgroupManager"`
	CgroupsMode     string                   `json:"cgroupsMode"`
	CgroupParent    string                   `json:"cgroupParent,omitempty"`
	Runtime         string                   `json:"runtime"`
	Umask           string                   `json:"umask"`
}

type podmanNetwork struct {
	InterfaceName string `json:"interface_name"`
}

// configDump builds config.dump for the container.
func configDump(c *container, s *specs.Spec, id, name, image, imageID string, created time.Time) ([]byte, error) {
	cfg := containerConfig{
		Spec:            s,
		ID:              id,
		Name:            name,
		RawImageName:    image,
		RootfsImageName: image,
		RootfsImageID:   imageID,
		CreateNetNS:     !c.namespaces["net"].Shared,
		StopSignal:      15,
		StopTimeout:     10,
		CreatedTime:     created.UTC(),
		CgroupManager:   "cgroupfs",
		CgroupsMode:     "enabled",
		Runtime:         c.runtime.Name,
		Umask:           "0022",
	}
	if cfg.Runtime == "" {
		// Podman needs the name of a configured OCI runtime; runc is the
		// one that restores CRIU images on the hosts crtool targets.
		cfg.Runtime = "runc"
	}
	if s.Process != nil {
		cfg.Command = s.Process.Args
	}
	if s.Linux != nil && s.Linux.CgroupsPath != "" {
		cfg.CgroupParent = path.Dir(s.Linux.CgroupsPath)
	}
	if cfg.CreateNetNS {
		cfg.NetworkMode = "bridge"
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode config.dump: %w", err)
	}
	return b, nil
}
