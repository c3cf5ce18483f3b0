package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Tool names, as they appear in JSON keys.
const (
	ToolCrtool = "crtool"
	// ToolCrtoolStaged is crtool with --stage-pages: CRIU writes the
	// pages into the work directory and crtool archives them afterwards,
	// the path before pages went straight into the archive.
	ToolCrtoolStaged = "crtool-staged"
	// ToolCrtoolLazy migrates by post-copy (dump and restore
	// --lazy-pages) between two namespaces of this host.
	ToolCrtoolLazy = "crtool-lazy"
	ToolRunc       = "runc+tar"
	ToolPodman     = "podman"
)

// Archive formats, as they appear in JSON keys.
const (
	FormatGzip = "gzip"
	FormatZstd = "zstd"
)

// AllTools is the rotation order of the tools.
var AllTools = []string{ToolCrtool, ToolCrtoolStaged, ToolCrtoolLazy, ToolRunc, ToolPodman}

// Formats are measured in this order (reversed on odd repetitions).
var Formats = []string{FormatGzip, FormatZstd}

// Options configure one benchmark run.
type Options struct {
	Sizes []int // MiB touched by the workload, one block each
	Runs  int   // repetitions; medians are reported
	// Small adds a small-container case: "" (the 64 MiB size serves) or
	// "httpd" (a busybox httpd, which then serves for the small targets).
	Small string
	Tools []string // subset of AllTools, default all

	Crtool     string // crtool binary
	CRIU       string // CRIU binary for runc and crtool
	Runc       string // runc binary
	Podman     string // podman binary; "" looks it up, missing skips Podman
	PodmanConf string // CONTAINERS_CONF for podman
	WorkDir    string // "" makes (and removes) a temporary one under /var/tmp
	JSON       string // write the report here too
	Limits     bool   // measure the machine's disk and compression limits

	Out io.Writer // the table
	Log io.Writer // progress
}

// DefaultOptions returns the options `make bench` uses.
func DefaultOptions() Options {
	return Options{
		Sizes:      []int{64, 512, 2048},
		Runs:       3,
		Tools:      slices.Clone(AllTools),
		Crtool:     "bin/crtool",
		CRIU:       "/opt/crtool/criu/bin/criu",
		Runc:       "runc",
		PodmanConf: "/opt/crtool/podman/containers.conf",
		Limits:     true,
	}
}

// Validate checks the options before any work.
func (o *Options) Validate() error {
	if len(o.Sizes) == 0 && o.Small == "" {
		return errors.New("nothing to measure: give -sizes or -small httpd")
	}
	for _, s := range o.Sizes {
		if s < 1 || s > 64<<10 {
			return fmt.Errorf("size %d MiB out of range 1-65536", s)
		}
	}
	if o.Runs < 1 {
		return fmt.Errorf("-runs %d: need at least 1", o.Runs)
	}
	if o.Small != "" && o.Small != "httpd" {
		return fmt.Errorf("-small %q: only \"httpd\" is known", o.Small)
	}
	if len(o.Tools) == 0 {
		return errors.New("-tools is empty: name crtool, runc+tar and/or podman")
	}
	for _, t := range o.Tools {
		if !slices.Contains(AllTools, t) {
			return fmt.Errorf("-tools: unknown tool %q (known: %s)", t, strings.Join(AllTools, ", "))
		}
	}
	return nil
}

// ParseSizes parses "64,512,2048" (MiB; a G suffix means GiB).
func ParseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		mult := 1
		switch {
		case strings.HasSuffix(f, "G"), strings.HasSuffix(f, "GiB"):
			mult = 1024
			f = strings.TrimSuffix(strings.TrimSuffix(f, "iB"), "G")
		case strings.HasSuffix(f, "M"), strings.HasSuffix(f, "MiB"):
			f = strings.TrimSuffix(strings.TrimSuffix(f, "iB"), "M")
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad size %q: want MiB like 64,512,2048", f)
		}
		out = append(out, n*mult)
	}
	return out, nil
}

// ParseTools parses "crtool,runc+tar,podman" ("runc" is accepted for runc+tar).
func ParseTools(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "runc" {
			f = ToolRunc
		}
		if f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}
