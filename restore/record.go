package restore

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/guardian"
	"github.com/crtool/crtool/internal/network"
	"github.com/crtool/crtool/internal/record"
)

// checkNameFree refuses a name that a container crtool restored still
// holds: its record, and what the record lists, would be overwritten.
func checkNameFree(name string) error {
	if err := record.ValidName(name); err != nil {
		return errdefs.Hint(errdefs.Newf(errdefs.ErrUsage, "%v", err), "pass ", "Name", "")
	}
	if record.Exists(name) {
		return errdefs.Newf(errdefs.ErrConflict, "a container named %s was restored before (crtool ps -a shows it): remove it with crtool rm -f %s, or pass --name NEW", name, name)
	}
	return nil
}

// commit writes the container's record: from here on crtool ps lists it
// and crtool rm removes every piece this restore created.
func (r *restorer) commit(ctx context.Context) error {
	init, err := record.Identify(r.pid)
	if err != nil {
		return fmt.Errorf("restored pid %d is gone right after the restore: see %s", r.pid, r.keptLog)
	}
	file, err := record.Path(r.name)
	if err != nil {
		return err
	}
	// Journaled first: a crtool killed right after the write leaves no
	// record of a container its guardian removed.
	if err := r.rollback.PushRecord("remove the record of "+r.name, guardian.Remove(file), func() error { return record.Delete(r.name) }); err != nil {
		return err
	}
	return record.Save(r.record(init))
}

// record describes what this restore created.
func (r *restorer) record(init record.Process) *record.Record {
	rec := &record.Record{
		Name:       r.name,
		ID:         r.md.Container.ID,
		Archive:    r.opts.Input,
		Restored:   time.Now().UTC(),
		Init:       init,
		Root:       r.root,
		Cgroups:    r.cg,
		CgroupDirs: r.cgMade,
		Log:        r.opts.Log,
	}
	if abs, err := filepath.Abs(r.opts.Input); err == nil && r.opts.Input != "-" {
		rec.Archive = abs
	}
	if r.dir != nil && r.dir.created {
		rec.StateDir = r.dir.path
		if merged := filepath.Join(r.dir.path, "merged"); r.root == merged {
			rec.Mounts = []string{merged}
		}
		rec.Images = r.images
	}
	if r.ports != nil {
		rec.NftTables = append(rec.NftTables, record.NftTable{Netns: network.OwnNetns, Family: "inet", Name: r.ports.Table})
		for _, p := range r.publish {
			rec.Ports = append(rec.Ports, record.Port{HostIP: p.HostIP, HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
		}
	}
	if r.net != nil {
		rec.Netns = &record.Netns{Path: r.net.path, Created: r.net.created != ""}
		for _, l := range r.net.outer {
			rec.Links = append(rec.Links, record.Link{Name: l.Name, Kind: l.Kind, Netns: l.Netns})
		}
	}
	if r.md.Network != nil {
		for _, a := range r.md.Network.Addrs {
			if !a.Auto && a.Link != "lo" && !strings.HasPrefix(a.CIDR, "127.") && a.CIDR != "::1/128" {
				rec.Addresses = append(rec.Addresses, a.CIDR)
			}
		}
	}
	return rec
}
