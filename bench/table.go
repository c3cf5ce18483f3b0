package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// tableRow is one operation of a size's block.
type tableRow struct {
	label  string
	metric string
	format func(float64) string
}

var tableRows = []tableRow{
	{"start (run → answering)", "start_ms", fmtMs},
	{"dump wall", "dump_wall_ms", fmtMs},
	{"  freezing", "dump_freezing_ms", fmtMs},
	{"  frozen (downtime)", "dump_frozen_ms", fmtMs},
	{"  CRIU dump ¹", "dump_criu_ms", fmtMs},
	{"    CRIU's memdump_time", "dump_memdump_ms", fmtMs},
	{"    CRIU's memwrite_time", "dump_memwrite_ms", fmtMs},
	{"  archive write ²", "dump_write_ms", fmtMs},
	{"archive size", "archive_bytes", fmtBytes},
	{"restore wall", "restore_wall_ms", fmtMs},
	{"  unpack ³", "restore_unpack_ms", fmtMs},
	{"  CRIU restore ⁴", "restore_criu_ms", fmtMs},
	{"  CRIU's own restore_time", "restore_criu_stats_ms", fmtMs},
	{"answer (from restore start)", "answer_ms", fmtMs},
	{"downtime (dump start → answer)", "downtime_ms", fmtMs},
	{"  post-copy transfer (crtool-lazy)", "lazy_transfer_ms", fmtMs},
	{"peak RSS dump ⁵", "dump_rss_kib", fmtKiB},
	{"peak RSS restore ⁵", "restore_rss_kib", fmtKiB},
	{"  crtool process alone, dump", "dump_self_hwm_kib", fmtKiB},
	{"  crtool process alone, restore", "restore_self_hwm_kib", fmtKiB},
}

const tableFootnotes = `¹ crtool: CRIU's part of the dump; runc+tar: runc checkpoint; Podman: runtime_checkpoint_duration
² crtool: archive write incl. fsync; runc+tar: tar c (no fsync); Podman: podman_checkpoint_duration − runtime's (export, engine)
³ crtool: until its -v "restoring" line (unpack, cgroups, files); runc+tar: tar x; Podman: podman_restore_duration − runtime's
⁴ crtool: its CRIU RPC (--print-stats; without it the rest after ³); runc+tar: runc restore; Podman: runtime_restore_duration
⁵ wait4 maxrss through a small launcher: the process or any child it reaped (crtool, runc: CRIU; tar: gzip/zstd; podman: runc, CRIU)
`

const (
	labelWidth = 34
	colWidth   = 13
)

// columnTitle is the header of a tool/format column.
func columnTitle(tool, format string) string {
	switch tool {
	case ToolRunc:
		if format == FormatGzip {
			return "runc+tar gz"
		}
		return "runc+tar zst"
	case ToolPodman:
		return "Podman " + format
	}
	return tool + " " + format
}

// RenderTable writes the per-size blocks, the ratios, the machine limits
// and the targets.
func RenderTable(w io.Writer, r *Report) {
	tools := r.tools
	if len(tools) == 0 {
		tools = AllTools
	}
	renderHeader(w, r)
	for _, key := range r.workloadKeys() {
		renderBlock(w, r, key, tools)
	}
	fmt.Fprint(w, tableFootnotes)
	if r.Machine != nil {
		fmt.Fprintln(w)
		renderMachine(w, r.Machine)
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w)
		renderTargets(w, r.Targets)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "\n%d measurement(s) failed:\n", len(r.Errors))
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %s\n", firstLine(e))
		}
	}
}

func renderHeader(w io.Writer, r *Report) {
	h := r.Host
	if h.Kernel == "" {
		return
	}
	fmt.Fprintf(w, "crtool-bench %s: kernel %s, %d CPUs (%s), %s RAM; load average %s at the start, %s at the end\n",
		r.Started.Format("2006-01-02 15:04 MST"), h.Kernel, h.CPUs, h.CPUModel, fmtBytes(float64(h.MemTotalBytes)), h.LoadStart, h.LoadEnd)
	var vs []string
	for _, k := range []string{"crtool", "criu", "runc", "podman"} {
		if v, ok := h.Versions[k]; ok {
			vs = append(vs, v)
		}
	}
	fmt.Fprintf(w, "versions: %s\n", strings.Join(vs, "; "))
}

func renderBlock(w io.Writer, r *Report, key string, tools []string) {
	label := key
	for _, wl := range r.workloads {
		if wl.Key == key {
			label = wl.Label
		}
	}
	runs := map[string]int{}
	ok := map[string]int{}
	for _, s := range r.Samples {
		if s.Workload != key {
			continue
		}
		runs[s.Column()]++
		if s.Error == "" {
			ok[s.Column()]++
		}
	}
	fmt.Fprintf(w, "\n== %s: medians of %s ==\n", label, runsText(runs))
	var cols []string
	fmt.Fprintf(w, "%-*s", labelWidth, "")
	for _, t := range tools {
		for _, f := range Formats {
			col := Column(t, f)
			cols = append(cols, col)
			title := columnTitle(t, f)
			if runs[col] > 0 && ok[col] < runs[col] {
				title += fmt.Sprintf(" %d/%d", ok[col], runs[col])
			}
			fmt.Fprintf(w, " %*s", colWidth, title)
		}
	}
	fmt.Fprintln(w)
	for _, row := range tableRows {
		var cells []string
		has := false
		for _, col := range cols {
			v, present := r.Medians[key][col][row.metric]
			switch {
			case runs[col] > 0 && ok[col] == 0:
				cells = append(cells, "fail")
			case !present || math.IsNaN(v):
				cells = append(cells, "-")
			default:
				cells = append(cells, row.format(v))
				has = true
			}
		}
		if !has {
			continue
		}
		fmt.Fprintf(w, "%-*s", labelWidth, row.label)
		for _, c := range cells {
			fmt.Fprintf(w, " %*s", colWidth, c)
		}
		fmt.Fprintln(w)
	}
	renderRatios(w, r, key, tools)
}

// runsText says how many runs the medians are of.
func runsText(runs map[string]int) string {
	n := 0
	for _, v := range runs {
		n = max(n, v)
	}
	if n == 1 {
		return "1 run"
	}
	return fmt.Sprintf("%d runs", n)
}

func renderRatios(w io.Writer, r *Report, key string, tools []string) {
	var lines []string
	for _, other := range []string{ToolRunc, ToolPodman} {
		if !slices.Contains(tools, other) || !slices.Contains(tools, ToolCrtool) {
			continue
		}
		for _, metric := range []struct{ name, key string }{{"dump wall", "dump_wall_ms"}, {"restore wall", "restore_wall_ms"}} {
			line := fmt.Sprintf("  %-*s", labelWidth-2, fmt.Sprintf("%s crtool/%s", metric.name, displayTool(other)))
			has := false
			for _, f := range Formats {
				v, ok := r.Ratios[key][ratioKey(metric.key, other, f)]
				cell := "-"
				if ok {
					cell = fmt.Sprintf("%.2f×", v)
					has = true
				}
				line += fmt.Sprintf(" %*s", colWidth, f+" "+cell)
			}
			if has {
				lines = append(lines, line)
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "ratios (crtool's median ÷ the other's; below 1: crtool is faster)")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
}

func displayTool(t string) string {
	if t == ToolPodman {
		return "Podman"
	}
	return t
}

func renderMachine(w io.Writer, m *Machine) {
	fmt.Fprintf(w, "== machine limits (this run; MiB/s of uncompressed data) ==\n")
	d := m.Disk
	fmt.Fprintf(w, "  %-64s %9.0f MiB/s\n", fmt.Sprintf("write %d MiB into the page cache, no fsync", d.FileMiB), d.WriteMiBs)
	fmt.Fprintf(w, "  %-64s %9.0f MiB/s  (the fsync alone: %s)\n", "the same write including its fsync", d.WriteSyncMiBs, fmtMs(d.FsyncMs))
	fmt.Fprintf(w, "  %-64s %9.0f MiB/s\n", "read back from the page cache", d.ReadCachedMiBs)
	fmt.Fprintf(w, "  %-64s %9.0f MiB/s\n", "read back cold (after FADV_DONTNEED)", d.ReadColdMiBs)
	if m.Memory.MiB > 0 {
		fmt.Fprintf(w, "  %-64s %9.0f MiB/s\n", fmt.Sprintf("first touch of %d MiB fresh anonymous memory (page faults)", m.Memory.MiB), m.Memory.FirstTouchMiBs)
		fmt.Fprintf(w, "  %-64s %9.0f MiB/s\n", "copy into memory already touched", m.Memory.CopyMiBs)
	}
	fmt.Fprintf(w, "  compressors on %d MiB of the workload's data mix:\n", m.DataMiB)
	for _, c := range m.Compress {
		ratio := ""
		if c.Ratio > 0 {
			ratio = fmt.Sprintf("  (output %.1f%% of input)", 100*c.Ratio)
		}
		fmt.Fprintf(w, "  %-64s %9.0f MiB/s%s\n", c.Name, c.MiBs, ratio)
	}
}

func renderTargets(w io.Writer, ts []Target) {
	fmt.Fprintln(w, "== targets of the issue (this run's medians; a miss does not fail the run) ==")
	for _, t := range ts {
		tag := map[string]string{StatusMet: "[met]   ", StatusMissed: "[MISSED]", StatusNA: "[n/a]   "}[t.Status]
		fmt.Fprintf(w, "  %s %s: %s\n", tag, t.Text, targetDetail(t))
	}
}

// targetDetail is the measured side of a target.
func targetDetail(t Target) string {
	var s string
	switch {
	case t.Status == StatusNA:
		return t.Note
	case t.Unit == "×":
		s = fmt.Sprintf("%.3f× (%s vs %s) on %s", t.Ratio, fmtMs(t.Value), fmtMs(t.Reference), t.Workload)
	case t.Unit == "ms":
		s = fmt.Sprintf("%s (%s)", fmtMs(t.Value), t.Workload)
	case t.Unit == "KiB":
		s = fmtKiB(t.Value)
	}
	if t.Note != "" {
		s += "; " + t.Note
	}
	return s
}

// fmtMs formats milliseconds with three significant digits or so.
func fmtMs(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.2f ms", v)
	case v < 10:
		return fmt.Sprintf("%.1f ms", v)
	case v < 1000:
		return fmt.Sprintf("%.0f ms", v)
	case v < 10000:
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.1f s", v/1000)
}

func fmtBytes(v float64) string {
	switch {
	case v < 1<<10:
		return fmt.Sprintf("%.0f B", v)
	case v < 1<<20:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	case v < 1<<30:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", v/(1<<30))
}

func fmtKiB(v float64) string { return fmtBytes(v * 1024) }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
