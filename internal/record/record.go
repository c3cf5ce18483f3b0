// Package record keeps, for every container crtool restored, the record of
// what the restore created on the host, so that ps can show it and rm can
// remove every piece again.
package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/crtool/crtool/internal/errdefs"
)

// Dir holds the records, one NAME.json per container. It is on /run: the
// processes, namespaces, mounts and cgroups a record describes do not
// survive a reboot either.
var Dir = "/run/crtool/containers"

// Version is the schema version written into every record.
const Version = 1

// Record is what a restore created for one container. The JSON keys are
// stable (README, "ps and rm"): a new key may be added, none renamed.
type Record struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	ID      string `json:"id"`
	// Archive is the archive the container was restored from ("-" for
	// stdin).
	Archive  string    `json:"archive"`
	Restored time.Time `json:"restored"`
	// Init is the restored init process.
	Init Process `json:"init"`
	// Root is the root filesystem the container runs in.
	Root string `json:"root"`
	// StateDir is the state directory crtool created (archives crtool did
	// not write: the overlay's upper, work and merged directories).
	StateDir string `json:"stateDir,omitempty"`
	// Mounts are the mount points crtool created on the host, in the order
	// they were mounted.
	Mounts []string `json:"mounts,omitempty"`
	// Netns is the container's network namespace.
	Netns *Netns `json:"netns,omitempty"`
	// Links are the network links crtool created outside the container's
	// namespace: the host ends of veth pairs and bridges.
	Links []Link `json:"links,omitempty"`
	// Addresses are the container's addresses (CIDR), loopback left out.
	Addresses []string `json:"addresses,omitempty"`
	// Cgroups maps a hierarchy ("" for cgroup v2, else the v1 controller)
	// to the container's cgroup path in it.
	Cgroups map[string]string `json:"cgroups,omitempty"`
	// CgroupDirs are the cgroup directories the restore created, parents
	// first (parents that did not exist before are among them).
	CgroupDirs []string `json:"cgroupDirs,omitempty"`
	// NftTables are nftables tables crtool created for the container
	// (port forwarding, for example).
	NftTables []NftTable `json:"nftTables,omitempty"`
	// Ports are the container's published ports.
	Ports []Port `json:"ports,omitempty"`
	// Images are the Podman images mounted (podman image mount) as the
	// lower layer of the container's overlay, released after its mounts.
	Images []string `json:"images,omitempty"`
	// Log is the file that receives what the container writes to its
	// former supervisor's pipes (restore --log); it is the user's and
	// stays after rm.
	Log string `json:"log,omitempty"`
}

// Process identifies a process beyond its PID: a PID can be reused, its
// start time (clock ticks after boot) in the same boot cannot.
type Process struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
	BootID    string `json:"bootId"`
}

// Netns is the container's network namespace.
type Netns struct {
	Path string `json:"path"`
	// Created says crtool created it (a /run/netns/NAME); rm deletes only
	// those.
	Created bool `json:"created"`
}

// Link is a network link crtool created outside the container's
// namespace.
type Link struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`  // "veth" or "bridge"
	Netns string `json:"netns"` // the namespace it is in: a path, or "host"
}

// NftTable is an nftables table in a network namespace.
type NftTable struct {
	Netns  string `json:"netns"`  // a path, or "host"
	Family string `json:"family"` // "inet", "ip", "ip6"
	Name   string `json:"name"`
}

// Port is a published port: HostPort on the host leads to ContainerPort.
type Port struct {
	HostIP        string `json:"hostIp,omitempty"`
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"` // "tcp" or "udp"
}

// Path is the record file of name.
func Path(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	return filepath.Join(Dir, name+".json"), nil
}

// ValidName checks that name can name a record file.
func ValidName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("container name %q cannot be used: use letters, digits, '-', '_' or '.', not starting with '.'", name)
	}
	return nil
}

// Save writes r atomically: a reader sees the old record or the new one,
// never a part, also after a crash.
func Save(r *Record) error {
	p, err := Path(r.Name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(Dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", Dir, err)
	}
	r.Version = Version
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record of %s: %w", r.Name, err)
	}
	tmp, err := os.CreateTemp(Dir, "."+r.Name+".tmp-")
	if err != nil {
		return fmt.Errorf("write record of %s: %w", r.Name, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write record of %s: %w", r.Name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write record of %s: %w", r.Name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write record of %s: %w", r.Name, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("write record of %s: %w", r.Name, err)
	}
	return syncDir(Dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Load reads the record of name; ErrNotFound when there is none.
func Load(name string) (*Record, error) {
	p, err := Path(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errdefs.Newf(errdefs.ErrNotFound, "no container named %s was restored by crtool (crtool ps -a lists them)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("read record of %s: %w", name, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("record %s is damaged: %w (remove it after removing the container's pieces by hand)", p, err)
	}
	return &r, nil
}

// Exists reports whether name has a record.
func Exists(name string) bool {
	p, err := Path(name)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// List reads every record, sorted by name.
func List() ([]*Record, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", Dir, err)
	}
	var out []*Record
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		r, err := Load(name)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete removes the record of name; a record already gone is fine.
func Delete(name string) error {
	p, err := Path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove record of %s: %w", name, err)
	}
	// /run/crtool goes with its last record: nothing of crtool stays.
	_ = os.Remove(Dir)
	_ = os.Remove(filepath.Dir(Dir))
	return nil
}
