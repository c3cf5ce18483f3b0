package format

import (
	"encoding/json"
	"fmt"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ContainerConfig is the part of libpod's ContainerConfig (config.dump) that
// crtool writes and that Podman, CRI-O, checkpointctl and crtool read, in
// the key order Podman 4.3 writes. CRI-O writes a reduced copy of it.
type ContainerConfig struct {
	Spec             *specs.Spec                  `json:"spec,omitempty"`
	ID               string                       `json:"id"`
	Name             string                       `json:"name"`
	RawImageName     string                       `json:"RawImageName,omitempty"`
	RootfsImageID    string                       `json:"rootfsImageID,omitempty"`
	RootfsImageName  string                       `json:"rootfsImageName,omitempty"`
	CreateNetNS      bool                         `json:"createNetNS"`
	Networks         map[string]NetworkAttachment `json:"newNetworks,omitempty"`
	NetworkMode      string                       `json:"networkMode,omitempty"`
	PortMappings     []PodmanPortMapping          `json:"newPortMappings,omitempty"`
	Command          []string                     `json:"command,omitempty"`
	StopSignal       uint                         `json:"stopSignal"`
	StopTimeout      uint                         `json:"stopTimeout"`
	CreatedTime      time.Time                    `json:"createdTime"`
	CheckpointedTime time.Time                    `json:"checkpointedTime,omitzero"`
	CgroupManager    string                       `json:"cgroupManager"`
	CgroupsMode      string                       `json:"cgroupsMode"`
	CgroupParent     string                       `json:"cgroupParent,omitempty"`
	Runtime          string                       `json:"runtime"`
	Umask            string                       `json:"umask"`
}

// NetworkAttachment is how a container joins one of Podman's networks
// (config.dump's newNetworks).
type NetworkAttachment struct {
	InterfaceName string `json:"interface_name"`
}

// PodmanPortMapping is a published port as config.dump records it (Podman's
// types.PortMapping): Range consecutive ports from HostPort and
// ContainerPort; Protocol may list several, comma-separated.
type PodmanPortMapping struct {
	HostIP        string `json:"host_ip"`
	ContainerPort uint16 `json:"container_port"`
	HostPort      uint16 `json:"host_port"`
	Range         uint16 `json:"range"`
	Protocol      string `json:"protocol"`
}

// NetworkStatus is the content of network.status: the netavark StatusBlock
// of each network, by network name.
type NetworkStatus map[string]PodmanNetwork

// PodmanNetwork is netavark's StatusBlock.
type PodmanNetwork struct {
	Interfaces       map[string]PodmanInterface `json:"interfaces,omitempty"`
	DNSServerIPs     []string                   `json:"dns_server_ips,omitempty"`
	DNSSearchDomains []string                   `json:"dns_search_domains,omitempty"`
}

// PodmanInterface is netavark's NetInterface.
type PodmanInterface struct {
	Subnets    []PodmanSubnet `json:"subnets,omitempty"`
	MacAddress string         `json:"mac_address"`
}

// PodmanSubnet is netavark's NetAddress: the container's address with its
// prefix length, and the gateway of that subnet.
type PodmanSubnet struct {
	IPNet   string `json:"ipnet"`
	Gateway string `json:"gateway,omitempty"`
}

// BindMount is an entry of CRI-O's bind.mounts.
type BindMount struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	FileType    string `json:"file_type"`
	Permissions uint32 `json:"permissions"`
}

// Descriptors is runc's descriptors.json: what the init's descriptors 0, 1
// and 2 pointed to, as /proc shows it ("pipe:[123]", "/dev/null").
type Descriptors []string

// DeletedFiles is deleted.files: the paths the container removed from its
// image, absolute.
type DeletedFiles []string

// Decode decodes the JSON member name into v, naming the member in its error.
func Decode(name string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
