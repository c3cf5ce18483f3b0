package dump

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/crtool/crtool/format"
)

// podmanInfo is what Podman knows of a container it started and crtool
// records: its name, image, network and published ports.
type podmanInfo struct {
	Name      string
	ImageName string
	ImageID   string
	Networks  []string
	Ports     []format.PortMapping
}

// inspectPodman asks Podman about the container with runtime ID id. It
// returns nil without error when Podman is not installed or does not know
// the container: it was started some other way.
func inspectPodman(ctx context.Context, id string) (*podmanInfo, error) {
	if len(id) != 64 {
		return nil, nil
	}
	bin, err := exec.LookPath("podman")
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "container", "inspect", "--format", "json", id).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && strings.Contains(string(ee.Stderr), "no such container") {
			return nil, nil
		}
		return nil, fmt.Errorf("podman container inspect %s: %w", format.ShortID(id), err)
	}
	return parsePodmanInspect(out)
}

// parsePodmanInspect reads the parts of podman container inspect's JSON
// that crtool records.
func parsePodmanInspect(b []byte) (*podmanInfo, error) {
	var cs []struct {
		Name            string
		ImageName       string
		Image           string
		NetworkSettings struct {
			Networks map[string]json.RawMessage
			Ports    map[string][]struct {
				HostIP   string `json:"HostIp"`
				HostPort string
			}
		}
	}
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("podman container inspect: %w", err)
	}
	if len(cs) != 1 {
		return nil, fmt.Errorf("podman container inspect described %d containers, not one", len(cs))
	}
	c := cs[0]
	info := &podmanInfo{Name: c.Name, ImageName: c.ImageName, ImageID: c.Image}
	for n := range c.NetworkSettings.Networks {
		info.Networks = append(info.Networks, n)
	}
	sort.Strings(info.Networks)
	for ctr, hosts := range c.NetworkSettings.Ports {
		port, proto, _ := strings.Cut(ctr, "/")
		cport, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("podman container inspect: port %q: %w", ctr, err)
		}
		for _, h := range hosts {
			hport, err := strconv.Atoi(h.HostPort)
			if err != nil {
				return nil, fmt.Errorf("podman container inspect: host port %q of %s: %w", h.HostPort, ctr, err)
			}
			ip := h.HostIP
			if ip == "0.0.0.0" {
				ip = ""
			}
			info.Ports = append(info.Ports, format.PortMapping{HostIP: ip, HostPort: hport, ContainerPort: cport, Protocol: proto})
		}
	}
	sort.Slice(info.Ports, func(i, j int) bool { return info.Ports[i].HostPort < info.Ports[j].HostPort })
	return info, nil
}

// fromPodman completes what the user did not give from Podman, when
// Podman started the container: its name, image, network and published
// ports, so that restore needs no more than the archive.
func (d *dumper) fromPodman(ctx context.Context) error {
	info, err := inspectPodman(ctx, d.c.runtime.ID)
	if err != nil {
		d.opts.warnf("%v: the archive will not record the container's Podman name, image and ports", err)
	}
	d.podman = info
	if info != nil {
		d.opts.logf("Podman container %s (image %s, networks %s, ports %v)", info.Name, info.ImageName, strings.Join(info.Networks, ","), info.Ports)
		if d.opts.Name == "" {
			d.opts.Name = info.Name
		}
		if d.image.Name == "" && info.ImageName != "" && len(info.ImageID) == 64 {
			d.image = imageRef{Name: info.ImageName, ID: info.ImageID, podman: true}
		}
		if d.opts.PodmanNetwork == "" && len(info.Networks) > 0 {
			d.opts.PodmanNetwork = info.Networks[0]
		}
		d.ports = info.Ports
	}
	if d.opts.PodmanNetwork == "" {
		d.opts.PodmanNetwork = DefaultPodmanNetwork
	}
	d.ports = format.MergePorts(d.ports, d.opts.Publish)
	return nil
}
