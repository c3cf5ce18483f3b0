package containers

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/internal/record"
)

// Status of a restored container.
const (
	Running = "running" // its init runs (the recorded PID and start time)
	Exited  = "exited"  // its init is gone; pieces of it remain on the host
	Gone    = "gone"    // its init is gone and so is every piece but the record
)

// Entry is one line of crtool ps. The JSON keys are stable (README, "ps
// and rm").
type Entry struct {
	Name      string        `json:"name"`
	ID        string        `json:"id"`
	Status    string        `json:"status"`
	PID       int           `json:"pid"`
	Started   *time.Time    `json:"started,omitempty"` // when running
	Uptime    string        `json:"uptime,omitempty"`  // when running
	Addresses []string      `json:"addresses"`
	Ports     []record.Port `json:"ports"`
	Archive   string        `json:"archive"`
	Restored  time.Time     `json:"restored"`
}

// List returns the restored containers; exited and gone ones only with all.
func List(all bool) ([]Entry, error) {
	recs, err := record.List()
	if err != nil {
		return nil, err
	}
	out := []Entry{}
	for _, r := range recs {
		e := entry(r, time.Now())
		if e.Status != Running && !all {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

func entry(r *record.Record, now time.Time) Entry {
	e := Entry{
		Name: r.Name, ID: r.ID, Status: StatusOf(r), PID: r.Init.PID,
		Addresses: r.Addresses, Ports: r.Ports, Archive: r.Archive, Restored: r.Restored,
	}
	if e.Addresses == nil {
		e.Addresses = []string{}
	}
	if e.Ports == nil {
		e.Ports = []record.Port{}
	}
	if e.Status == Running {
		st := r.Init.Started().UTC().Truncate(time.Second)
		e.Started = &st
		e.Uptime = now.Sub(st).Truncate(time.Second).String()
	}
	return e
}

// StatusOf tells whether the recorded container runs, has exited, or left
// nothing but its record.
func StatusOf(r *record.Record) string {
	if r.Init.Alive() {
		return Running
	}
	if len(leftPieces(r)) > 0 {
		return Exited
	}
	return Gone
}

// leftPieces names what of the record is still on the host.
func leftPieces(r *record.Record) []string {
	var left []string
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	if r.StateDir != "" && exists(r.StateDir) {
		left = append(left, r.StateDir)
	}
	if r.Netns != nil && r.Netns.Created && exists(r.Netns.Path) {
		left = append(left, r.Netns.Path)
	}
	for _, d := range r.CgroupDirs {
		if exists(d) {
			left = append(left, d)
		}
	}
	for h, p := range r.Cgroups {
		if d, err := cgroups.Dir(h, p); err == nil {
			if pids, err := cgroups.Pids(d); err == nil && len(pids) > 0 {
				left = append(left, d)
			}
		}
	}
	return left
}

// RenderTable writes the entries as a table with a header.
func RenderTable(w io.Writer, entries []Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tPID\tUPTIME\tIP\tPORTS\tARCHIVE")
	for _, e := range entries {
		pid, up := "-", "-"
		if e.Status == Running {
			pid, up = fmt.Sprint(e.PID), e.Uptime
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Status, pid, up,
			orDash(ips(e.Addresses)), orDash(ports(e.Ports)), e.Archive)
	}
	return tw.Flush()
}

// RenderJSON writes the entries as a JSON array.
func RenderJSON(w io.Writer, entries []Entry) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(entries)
}

// ips shows addresses without their prefix length.
func ips(cidrs []string) string {
	var out []string
	for _, c := range cidrs {
		ip, _, _ := strings.Cut(c, "/")
		out = append(out, ip)
	}
	return strings.Join(out, ",")
}

// ports shows published ports as Podman does: 0.0.0.0:8080->80/tcp.
func ports(ps []record.Port) string {
	var out []string
	for _, p := range ps {
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		out = append(out, fmt.Sprintf("%s:%d->%d/%s", ip, p.HostPort, p.ContainerPort, p.Protocol))
	}
	return strings.Join(out, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
