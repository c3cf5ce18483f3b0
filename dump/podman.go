package dump

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/crtool/crtool/images"
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
func configDump(c *container, s *specs.Spec, id, name string, image imageRef, network string, created time.Time) ([]byte, error) {
	cfg := containerConfig{
		Spec:            s,
		ID:              id,
		Name:            name,
		RawImageName:    image.Name,
		RootfsImageName: image.Name,
		RootfsImageID:   image.ID,
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
		// Podman attaches an imported container to these networks; without
		// them it restores it into a namespace with no interface at all.
		cfg.NetworkMode = "bridge"
		cfg.Networks = map[string]podmanNetwork{network: {InterfaceName: "eth0"}}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode config.dump: %w", err)
	}
	return b, nil
}

// writeDescriptors writes descriptors.json, which runc (and so Podman)
// reads on restore to reconnect the init's stdio: what fds 0, 1 and 2
// pointed to, as /proc shows it ("pipe:[123]", "/dev/null").
func writeDescriptors(imgDir string, pid int, fds []fdInfo) error {
	desc := make([]string, 3)
	for _, f := range fds {
		if f.pid == pid && f.fd < 3 {
			desc[f.fd] = f.target
		}
	}
	b, err := json.Marshal(desc)
	if err != nil {
		return fmt.Errorf("encode %s: %w", images.DescriptorsFile, err)
	}
	if err := os.WriteFile(filepath.Join(imgDir, images.DescriptorsFile), b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", images.DescriptorsFile, err)
	}
	return nil
}
