package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"time"
)

// Metrics are one cell's measurements, keyed by the names below. Times are
// milliseconds, sizes bytes or KiB as the suffix says. A key is absent when
// the tool does not report it.
//
// The JSON report (-json FILE) has these stable top-level keys, and keys
// are only ever added:
//
//	version   1
//	started   RFC 3339 time of the run's start
//	host      kernel, cpus, memTotalBytes, tool versions (crtool, criu, runc,
//	          podman, go), loadStart and loadEnd (/proc/loadavg)
//	options   sizes, runs, small, tools, workDir
//	machine   the machine's limits (see Machine)
//	samples   every cell: workload, sizeMiB, tool, format, run (0-based
//	          repetition), seq (order in the run), started, metrics, error
//	medians   workload → column → metric → median over the runs without
//	          error; column is "TOOL/FORMAT", e.g. "crtool/gzip",
//	          "runc+tar/zstd", "podman/gzip"
//	ratios    workload → "METRIC:crtool/OTHER:FORMAT" → median(crtool) /
//	          median(OTHER), for dump_wall_ms and restore_wall_ms
//	targets   the targets: id, text, workload, value, reference,
//	          ratio, limit, status ("met", "missed", "n/a"), note
//	errors    what failed, one line each
//
// Metric keys (all tools unless noted):
//
//	start_ms              run → first answer of the new container
//	dump_wall_ms          whole dump, timed here: crtool dump; runc checkpoint
//	                      + tar; podman container checkpoint --export
//	dump_freezing_ms      time to freeze the cgroup (crtool's own; CRIU's
//	                      stats-dump for runc+tar; Podman's criu_statistics)
//	dump_frozen_ms        frozen time as the tool reports it (crtool: until
//	                      the archive is synced and the container killed;
//	                      CRIU: until its dump ended)
//	dump_criu_ms          crtool: CRIU's part; runc+tar: runc checkpoint
//	                      wall; Podman: runtime_checkpoint_duration
//	dump_write_ms         crtool: archive write incl. fsync; runc+tar: tar
//	                      wall; Podman: podman_checkpoint_duration minus
//	                      runtime_checkpoint_duration (export and engine)
//	dump_memdump_ms       CRIU's memdump_time (crtool with --print-stats,
//	                      runc+tar, Podman)
//	dump_memwrite_ms      CRIU's memwrite_time (likewise)
//	dump_rss_kib          peak RSS from wait4 of the dump's processes (it
//	                      includes the children they reaped: CRIU for crtool
//	                      and runc, runc and CRIU for podman, gzip for tar),
//	                      taken by csrc/rusage.c so that the benchmark's own
//	                      peak, which exec would carry over, is not in it
//	dump_self_hwm_kib     crtool only: VmHWM of the crtool process alone,
//	                      sampled every 5 ms
//	archive_bytes         size of the archive
//	podman_rm_ms          Podman only: podman rm between dump and restore
//	restore_wall_ms       whole restore, timed here: crtool restore; tar x +
//	                      runc restore; podman container restore --import
//	restore_unpack_ms     crtool: start until its "restoring" line (unpack
//	                      and preparation, from -v); runc+tar: tar x wall;
//	                      Podman: podman_restore_duration minus
//	                      runtime_restore_duration
//	restore_criu_ms       crtool: its runtime_restore_duration (CRIU's RPC)
//	                      from --print-stats, else the rest of
//	                      restore_wall_ms; runc+tar: runc restore wall;
//	                      Podman: runtime_restore_duration
//	restore_criu_stats_ms CRIU's own restore_time (from stats-restore or
//	                      --print-stats)
//	restore_rss_kib       as dump_rss_kib, for the restore
//	restore_self_hwm_kib  crtool only, as dump_self_hwm_kib
//	answer_ms             restore start → the restored container answered
//	downtime_ms           dump start → the restored container answered (dump_wall_ms + answer_ms)
//	lazy_transfer_ms      crtool-lazy: restore start → the last page arrived
//	                      (restore_wall_ms + the wait after it; looking up
//	                      the restored container's namespace is excluded)
type Metrics map[string]float64

// Sample is one measured cell: a fresh container of one workload, dumped
// with one tool and format, then restored and asked.
type Sample struct {
	Workload string    `json:"workload"`
	SizeMiB  int       `json:"sizeMiB"`
	Tool     string    `json:"tool"`
	Format   string    `json:"format"`
	Run      int       `json:"run"`
	Seq      int       `json:"seq"`
	Started  time.Time `json:"started"`
	Metrics  Metrics   `json:"metrics"`
	Error    string    `json:"error,omitempty"`
}

// Column is the table column and medians key of a sample.
func (s Sample) Column() string { return Column(s.Tool, s.Format) }

// Column names a tool and format, e.g. "crtool/gzip".
func Column(tool, format string) string { return tool + "/" + format }

// Host describes the machine and the versions measured.
type Host struct {
	Kernel        string            `json:"kernel"`
	CPUs          int               `json:"cpus"`
	CPUModel      string            `json:"cpuModel,omitempty"`
	MemTotalBytes int64             `json:"memTotalBytes"`
	Versions      map[string]string `json:"versions"`
	// LoadStart and LoadEnd are /proc/loadavg at the start and the end:
	// other work on the machine shows here.
	LoadStart string `json:"loadStart"`
	LoadEnd   string `json:"loadEnd"`
}

// Target is one of the goals, evaluated on this run's medians.
type Target struct {
	ID        string  `json:"id"`
	Text      string  `json:"text"`
	Workload  string  `json:"workload,omitempty"`
	Value     float64 `json:"value,omitempty"`     // crtool's median
	Reference float64 `json:"reference,omitempty"` // what it is compared with (0: an absolute limit)
	Ratio     float64 `json:"ratio,omitempty"`     // Value/Reference
	Limit     float64 `json:"limit"`               // the ratio, or the absolute value, to stay under
	Unit      string  `json:"unit"`                // "×", "ms", "KiB"
	Status    string  `json:"status"`              // met, missed, n/a
	Note      string  `json:"note,omitempty"`
}

// Target statuses.
const (
	StatusMet    = "met"
	StatusMissed = "missed"
	StatusNA     = "n/a"
)

// Report is everything one run measured.
type Report struct {
	Version int       `json:"version"`
	Started time.Time `json:"started"`
	Host    Host      `json:"host"`
	Options struct {
		Sizes   []int    `json:"sizes"`
		Runs    int      `json:"runs"`
		Small   string   `json:"small,omitempty"`
		Tools   []string `json:"tools"`
		WorkDir string   `json:"workDir"`
	} `json:"options"`
	Machine *Machine                                 `json:"machine,omitempty"`
	Samples []Sample                                 `json:"samples"`
	Medians map[string]map[string]map[string]float64 `json:"medians"`
	Ratios  map[string]map[string]float64            `json:"ratios"`
	Targets []Target                                 `json:"targets"`
	Errors  []string                                 `json:"errors"`

	workloads []Workload // in run order, for the table
	tools     []string   // the tools that ran
}

// median of xs; NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// computeMedians fills r.Medians and r.Ratios from r.Samples.
func (r *Report) computeMedians() {
	vals := map[string]map[string]map[string][]float64{}
	for _, s := range r.Samples {
		if s.Error != "" {
			continue
		}
		if vals[s.Workload] == nil {
			vals[s.Workload] = map[string]map[string][]float64{}
		}
		col := s.Column()
		if vals[s.Workload][col] == nil {
			vals[s.Workload][col] = map[string][]float64{}
		}
		for k, v := range s.Metrics {
			vals[s.Workload][col][k] = append(vals[s.Workload][col][k], v)
		}
	}
	r.Medians = map[string]map[string]map[string]float64{}
	for w, cols := range vals {
		r.Medians[w] = map[string]map[string]float64{}
		for col, ms := range cols {
			r.Medians[w][col] = map[string]float64{}
			for k, xs := range ms {
				r.Medians[w][col][k] = median(xs)
			}
		}
	}
	r.Ratios = map[string]map[string]float64{}
	for w := range r.Medians {
		for _, metric := range []string{"dump_wall_ms", "restore_wall_ms"} {
			for _, other := range []string{ToolCrtoolStaged, ToolRunc, ToolPodman} {
				for _, f := range Formats {
					if v, ok := r.ratio(w, metric, other, f); ok {
						if r.Ratios[w] == nil {
							r.Ratios[w] = map[string]float64{}
						}
						r.Ratios[w][ratioKey(metric, other, f)] = v
					}
				}
			}
		}
	}
}

func ratioKey(metric, other, format string) string {
	return fmt.Sprintf("%s:crtool/%s:%s", metric, other, format)
}

// ratio is crtool's median of metric over other's, for one format.
func (r *Report) ratio(workload, metric, other, format string) (float64, bool) {
	a, ok1 := medianOf(r, workload, Column(ToolCrtool, format), metric)
	b, ok2 := medianOf(r, workload, Column(other, format), metric)
	if !ok1 || !ok2 || b == 0 {
		return 0, false
	}
	return a / b, true
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
