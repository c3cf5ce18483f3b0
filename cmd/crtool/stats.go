package main

import (
	"encoding/json"
	"io"

	"github.com/crtool/crtool/dump"
	"github.com/crtool/crtool/restore"
)

// The --print-stats output follows Podman's (podman container checkpoint
// --print-stats): crtool's durations plus CRIU's own statistics, all in
// microseconds.

type dumpStats struct {
	Duration   int64                `json:"crtool_checkpoint_duration"`
	Containers []dumpContainerStats `json:"container_statistics"`
}

type dumpContainerStats struct {
	ID               string `json:"Id"`
	Name             string `json:"Name"`
	FreezingTime     int64  `json:"freezing_time"`
	FrozenTime       int64  `json:"frozen_time"`
	RuntimeDuration  int64  `json:"runtime_checkpoint_duration"`
	ArchiveWriteTime int64  `json:"archive_write_time"`
	ArchiveSize      int64  `json:"archive_size"`
	CRIU             any    `json:"criu_statistics,omitempty"`
}

type restoreStats struct {
	Duration   int64                   `json:"crtool_restore_duration"`
	Containers []restoreContainerStats `json:"container_statistics"`
}

type restoreContainerStats struct {
	ID              string `json:"Id"`
	Name            string `json:"Name"`
	PID             int    `json:"pid"`
	RuntimeDuration int64  `json:"runtime_restore_duration"`
	CRIU            any    `json:"criu_statistics,omitempty"`
}

func printDumpStats(w io.Writer, r *dump.Result) error {
	s := r.Metadata.Stats
	st := dumpStats{
		Duration: s.TotalTime,
		Containers: []dumpContainerStats{{
			ID: r.Metadata.Container.ID, Name: r.Metadata.Container.Name,
			FreezingTime: s.FreezingTime, FrozenTime: s.FrozenTime, RuntimeDuration: s.CRIUTime,
			ArchiveWriteTime: s.WriteTime, ArchiveSize: r.Size,
		}},
	}
	if r.CRIU != nil {
		st.Containers[0].CRIU = r.CRIU
	}
	return writeJSON(w, st)
}

func printRestoreStats(w io.Writer, r *restore.Result) error {
	st := restoreStats{
		Duration: r.Duration.Microseconds(),
		Containers: []restoreContainerStats{{
			ID: r.Metadata.Container.ID, Name: r.Name, PID: r.PID, RuntimeDuration: r.CRIUTime.Microseconds(),
		}},
	}
	if r.CRIU != nil {
		st.Containers[0].CRIU = r.CRIU
	}
	return writeJSON(w, st)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
