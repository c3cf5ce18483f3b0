package bench

import (
	"fmt"
	"math"
)

// Workload keys the targets refer to.
const (
	largeKey = "2048MiB"
	smallMem = "64MiB"
	httpdKey = "httpd"
)

// Target limits of the issue.
const (
	halfRatio = 0.5
	criuRatio = 1.5
	// criuDumpRatio is issue 12's: with pages going straight into the
	// archive, a .tar.zst dump costs little more than CRIU's own.
	criuDumpRatio = 1.2
	// Post-copy: downtime independent of memory.
	lazyRatio         = 0.1
	lazyDowntimeMaxMs = 500
	freezingMaxMs     = 10
	rssMaxKiB         = 64 << 10
)

// evaluateTargets compares this run's medians with the targets. A
// target whose inputs were not measured is n/a with the reason; a missed
// target never fails the run.
func evaluateTargets(r *Report) []Target {
	small := smallMem
	if _, ok := r.Medians[httpdKey]; ok {
		small = httpdKey
	}
	ts := []Target{
		ratioTarget(r, "gzip-2g-dump-vs-runc", "2 GiB .tar.gz: crtool dump ≤ 0.5× (runc checkpoint + tar czf)",
			largeKey, Column(ToolCrtool, FormatGzip), "dump_wall_ms", Column(ToolRunc, FormatGzip), "dump_wall_ms", halfRatio),
		ratioTarget(r, "gzip-2g-dump-vs-podman", "2 GiB .tar.gz: crtool dump ≤ 0.5× Podman checkpoint --compress gzip",
			largeKey, Column(ToolCrtool, FormatGzip), "dump_wall_ms", Column(ToolPodman, FormatGzip), "dump_wall_ms", halfRatio),
		ratioTarget(r, "gzip-2g-restore-vs-podman", "2 GiB .tar.gz: crtool restore ≤ 0.5× Podman restore",
			largeKey, Column(ToolCrtool, FormatGzip), "restore_wall_ms", Column(ToolPodman, FormatGzip), "restore_wall_ms", halfRatio),
		ratioTarget(r, "zstd-2g-dump-vs-criu", "2 GiB .tar.zst: crtool dump ≤ 1.2× CRIU's own dump (runc checkpoint, no tar)",
			largeKey, Column(ToolCrtool, FormatZstd), "dump_wall_ms", Column(ToolRunc, FormatZstd), "dump_criu_ms", criuDumpRatio),
		ratioTarget(r, "zstd-2g-restore-vs-criu", "2 GiB .tar.zst: crtool restore ≤ 1.5× CRIU's own restore (runc restore, no untar)",
			largeKey, Column(ToolCrtool, FormatZstd), "restore_wall_ms", Column(ToolRunc, FormatZstd), "restore_criu_ms", criuRatio),
	}
	for _, f := range Formats {
		ts = append(ts,
			ratioTarget(r, "small-dump-vs-podman-"+f, fmt.Sprintf("small container (%s), %s: crtool dump ≤ 0.5× Podman's", small, f),
				small, Column(ToolCrtool, f), "dump_wall_ms", Column(ToolPodman, f), "dump_wall_ms", halfRatio),
			ratioTarget(r, "small-restore-vs-podman-"+f, fmt.Sprintf("small container (%s), %s: crtool restore ≤ 0.5× Podman's", small, f),
				small, Column(ToolCrtool, f), "restore_wall_ms", Column(ToolPodman, f), "restore_wall_ms", halfRatio),
		)
	}
	ts = append(ts,
		ratioTarget(r, "lazy-2g-downtime-vs-crtool", "2 GiB, post-copy: crtool-lazy downtime ≤ 0.1× crtool's (zstd)",
			largeKey, Column(ToolCrtoolLazy, FormatZstd), "downtime_ms", Column(ToolCrtool, FormatZstd), "downtime_ms", lazyRatio),
		lazyDowntimeTarget(r))
	ts = append(ts, freezingTarget(r), rssTarget(r))
	return ts
}

// ratioTarget checks median(a)/median(b) ≤ limit on one workload.
func ratioTarget(r *Report, id, text, workload, colA, metricA, colB, metricB string, limit float64) Target {
	t := Target{ID: id, Text: text, Workload: workload, Limit: limit, Unit: "×", Status: StatusNA}
	a, okA := medianOf(r, workload, colA, metricA)
	b, okB := medianOf(r, workload, colB, metricB)
	switch {
	case r.Medians[workload] == nil:
		t.Note = fmt.Sprintf("workload %s not measured in this run", workload)
	case !okA:
		t.Note = fmt.Sprintf("no %s of %s", metricA, colA)
	case !okB:
		t.Note = fmt.Sprintf("no %s of %s", metricB, colB)
	case b <= 0:
		t.Note = fmt.Sprintf("%s of %s is zero", metricB, colB)
	default:
		t.Value, t.Reference, t.Ratio = a, b, a/b
		t.Status = status(t.Ratio <= limit)
	}
	return t
}

// lazyDowntimeTarget: post-copy downtime at 2 GiB, absolute.
func lazyDowntimeTarget(r *Report) Target {
	t := Target{ID: "lazy-2g-downtime", Text: "2 GiB, post-copy: crtool-lazy downtime ≤ 0.5 s (zstd)",
		Workload: largeKey, Limit: lazyDowntimeMaxMs, Unit: "ms", Status: StatusNA}
	v, ok := medianOf(r, largeKey, Column(ToolCrtoolLazy, FormatZstd), "downtime_ms")
	if !ok {
		t.Note = "crtool-lazy not measured at " + largeKey
		return t
	}
	t.Value = v
	t.Status = status(v <= lazyDowntimeMaxMs)
	return t
}

// freezingTarget: crtool's worst median freezing time, any size and format.
func freezingTarget(r *Report) Target {
	t := Target{ID: "freezing", Text: "crtool freezing ≤ 10 ms (worst median over sizes and formats)",
		Limit: freezingMaxMs, Unit: "ms", Status: StatusNA, Note: "no crtool freezing time measured"}
	worst := math.Inf(-1)
	for _, w := range r.workloadKeys() {
		for _, f := range Formats {
			if v, ok := medianOf(r, w, Column(ToolCrtool, f), "dump_freezing_ms"); ok && v > worst {
				worst = v
				t.Workload = w + " " + f
			}
		}
	}
	if !math.IsInf(worst, -1) {
		t.Value, t.Note = worst, ""
		t.Status = status(worst <= freezingMaxMs)
	}
	return t
}

// rssTarget: crtool's peak RSS at 2 GiB, dump or restore, either format.
// The figure comes from wait4 and so includes the CRIU child crtool reaped;
// the note gives crtool's own sampled peak.
func rssTarget(r *Report) Target {
	t := Target{ID: "rss-2g", Text: "crtool peak RSS ≤ 64 MiB at 2 GiB (wait4 maxrss, dump and restore)",
		Workload: largeKey, Limit: rssMaxKiB, Unit: "KiB", Status: StatusNA}
	if r.Medians[largeKey] == nil {
		t.Note = fmt.Sprintf("workload %s not measured in this run", largeKey)
		return t
	}
	worst, self := math.Inf(-1), math.Inf(-1)
	for _, f := range Formats {
		col := Column(ToolCrtool, f)
		for _, k := range []string{"dump_rss_kib", "restore_rss_kib"} {
			if v, ok := medianOf(r, largeKey, col, k); ok && v > worst {
				worst = v
			}
		}
		for _, k := range []string{"dump_self_hwm_kib", "restore_self_hwm_kib"} {
			if v, ok := medianOf(r, largeKey, col, k); ok && v > self {
				self = v
			}
		}
	}
	if math.IsInf(worst, -1) {
		t.Note = "no crtool peak RSS measured"
		return t
	}
	t.Value = worst
	t.Status = status(worst <= rssMaxKiB)
	if !math.IsInf(self, -1) {
		t.Note = fmt.Sprintf("crtool process alone (VmHWM): %s", fmtKiB(self))
	}
	return t
}

func medianOf(r *Report, workload, col, metric string) (float64, bool) {
	v, ok := r.Medians[workload][col][metric]
	if !ok || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

func status(ok bool) string {
	if ok {
		return StatusMet
	}
	return StatusMissed
}

// workloadKeys lists the measured workloads, in run order when known.
func (r *Report) workloadKeys() []string {
	var keys []string
	seen := map[string]bool{}
	for _, w := range r.workloads {
		keys = append(keys, w.Key)
		seen[w.Key] = true
	}
	for _, s := range r.Samples {
		if !seen[s.Workload] {
			keys = append(keys, s.Workload)
			seen[s.Workload] = true
		}
	}
	return keys
}
