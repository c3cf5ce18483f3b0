package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crtool/crtool/internal/testutil"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 10, 1000}, 10},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.in)
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("median reordered its input: %v", tt.in)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

// sample builds a successful sample.
func sample(w, tool, format string, run int, m Metrics) Sample {
	return Sample{Workload: w, Tool: tool, Format: format, Run: run, Metrics: m}
}

// testReport has two runs of every column on 64MiB and 2048MiB, and one
// failed Podman zstd run.
func testReport() *Report {
	r := &Report{workloads: []Workload{MemWorkload(64), MemWorkload(2048)}, tools: AllTools}
	for run := 0; run < 2; run++ {
		k := float64(run) // the medians are the averages of two runs
		for _, w := range []string{"64MiB", "2048MiB"} {
			scale := 1.0
			if w == "2048MiB" {
				scale = 20
			}
			for _, f := range Formats {
				r.Samples = append(r.Samples,
					sample(w, ToolCrtool, f, run, Metrics{"dump_wall_ms": (400 + k*100) * scale, "restore_wall_ms": 300 * scale,
						"dump_freezing_ms": 2 + k, "dump_rss_kib": 30000, "restore_rss_kib": 20000, "dump_self_hwm_kib": 25000,
						"archive_bytes": 34e6 * scale}),
					sample(w, ToolRunc, f, run, Metrics{"dump_wall_ms": 1000 * scale, "restore_wall_ms": 900 * scale,
						"dump_criu_ms": 200 * scale, "restore_criu_ms": 250 * scale}),
					sample(w, ToolPodman, f, run, Metrics{"dump_wall_ms": 1500 * scale, "restore_wall_ms": 1700 * scale}),
				)
			}
		}
	}
	r.Samples = append(r.Samples, Sample{Workload: "64MiB", Tool: ToolPodman, Format: FormatZstd, Run: 2, Error: "64MiB podman zstd run 3: dump: boom"})
	r.Errors = []string{"64MiB podman zstd run 3: dump: boom\nmore detail"}
	r.computeMedians()
	r.Targets = evaluateTargets(r)
	return r
}

func TestComputeMedians(t *testing.T) {
	r := testReport()
	if got := r.Medians["64MiB"]["crtool/gzip"]["dump_wall_ms"]; got != 450 {
		t.Errorf("crtool dump median %v, want 450", got)
	}
	// The failed run does not count.
	if got := r.Medians["64MiB"]["podman/zstd"]["dump_wall_ms"]; got != 1500 {
		t.Errorf("podman zstd median %v, want 1500", got)
	}
	if got := r.Ratios["64MiB"]["dump_wall_ms:crtool/runc+tar:gzip"]; got != 0.45 {
		t.Errorf("ratio %v, want 0.45", got)
	}
	// The keys are stable: decode the JSON and look them up by name.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "started", "host", "options", "samples", "medians", "ratios", "targets", "errors"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON report has no %q", k)
		}
	}
}

func TestRenderTable(t *testing.T) {
	r := testReport()
	var out bytes.Buffer
	RenderTable(&out, r)
	s := out.String()
	for _, want := range []string{
		"== 64 MiB workload (memhog): medians of 3 runs ==",
		"crtool gzip", "runc+tar gz", "runc+tar zst", "Podman gzip", "Podman zstd 2/3",
		"dump wall", "450 ms", "1.00 s", "1.50 s",
		"archive size", "32.4 MiB",
		"dump wall crtool/runc+tar", "gzip 0.45×",
		"restore wall crtool/Podman", "gzip 0.18×",
		"== 2048 MiB workload (memhog)", "9.00 s",
		"[met]    2 GiB .tar.gz: crtool dump ≤ 0.5× (runc checkpoint + tar czf): 0.450× (9.00 s vs 20.0 s) on 2048MiB",
		"[MISSED] 2 GiB .tar.zst: crtool dump ≤ 1.2× CRIU's own dump",
		"1 measurement(s) failed:", "dump: boom …",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	// Rows nobody measured are left out.
	if strings.Contains(s, "CRIU's restore_time") {
		t.Errorf("table shows an unmeasured row:\n%s", s)
	}
	// A column whose every run failed says so.
	r.Samples = slices.DeleteFunc(r.Samples, func(s Sample) bool {
		return s.Workload == "64MiB" && s.Tool == ToolPodman && s.Format == FormatZstd && s.Error == ""
	})
	r.computeMedians()
	out.Reset()
	RenderTable(&out, r)
	if !strings.Contains(out.String(), "fail") {
		t.Errorf("an all-failed column is not marked:\n%s", out.String())
	}
}

func TestEvaluateTargets(t *testing.T) {
	r := testReport()
	got := map[string]Target{}
	for _, tg := range r.Targets {
		got[tg.ID] = tg
	}
	tests := []struct {
		id, status string
		ratio      float64
	}{
		{"gzip-2g-dump-vs-runc", StatusMet, 0.45},
		{"gzip-2g-dump-vs-podman", StatusMet, 0.3},
		{"gzip-2g-restore-vs-podman", StatusMet, 300.0 / 1700},
		{"zstd-2g-dump-vs-criu", StatusMissed, 9000.0 / 4000},
		{"zstd-2g-restore-vs-criu", StatusMet, 6000.0 / 5000},
		{"small-dump-vs-podman-gzip", StatusMet, 0.3},
		{"small-restore-vs-podman-zstd", StatusMet, 300.0 / 1700},
	}
	for _, tt := range tests {
		tg, ok := got[tt.id]
		if !ok {
			t.Errorf("no target %s", tt.id)
			continue
		}
		if tg.Status != tt.status || math.Abs(tg.Ratio-tt.ratio) > 1e-9 {
			t.Errorf("%s: %s %.4f, want %s %.4f", tt.id, tg.Status, tg.Ratio, tt.status, tt.ratio)
		}
	}
	if f := got["freezing"]; f.Status != StatusMet || f.Value != 2.5 {
		t.Errorf("freezing: %+v", f)
	}
	if m := got["rss-2g"]; m.Status != StatusMet || m.Value != 30000 || !strings.Contains(m.Note, "24.4 MiB") {
		t.Errorf("rss: %+v", m)
	}

	// Without the 2 GiB size and without Podman, those targets are n/a
	// with a reason, never a failure.
	r2 := &Report{}
	r2.Samples = []Sample{sample("64MiB", ToolCrtool, FormatGzip, 0, Metrics{"dump_wall_ms": 1, "dump_freezing_ms": 12})}
	r2.computeMedians()
	for _, tg := range evaluateTargets(r2) {
		switch tg.ID {
		case "freezing":
			if tg.Status != StatusMissed {
				t.Errorf("freezing 12 ms: %s", tg.Status)
			}
		default:
			if tg.Status != StatusNA || tg.Note == "" {
				t.Errorf("%s: %s (%q), want n/a with a reason", tg.ID, tg.Status, tg.Note)
			}
		}
	}
}

func TestHttpdIsTheSmallCase(t *testing.T) {
	r := &Report{}
	for _, tool := range []string{ToolCrtool, ToolPodman} {
		r.Samples = append(r.Samples, sample("httpd", tool, FormatZstd, 0, Metrics{"dump_wall_ms": 100, "restore_wall_ms": 100}),
			sample("64MiB", tool, FormatZstd, 0, Metrics{"dump_wall_ms": 100, "restore_wall_ms": 100}))
	}
	r.Samples[0].Metrics["dump_wall_ms"] = 10
	r.computeMedians()
	for _, tg := range evaluateTargets(r) {
		if tg.ID == "small-dump-vs-podman-zstd" && (tg.Workload != "httpd" || tg.Status != StatusMet) {
			t.Errorf("small target on %s: %s", tg.Workload, tg.Status)
		}
	}
}

func TestRotate(t *testing.T) {
	tools := []Tool{&crtoolTool{}, &runcTool{}, &podmanTool{}}
	var firsts []string
	for rep := 0; rep < 3; rep++ {
		order := rotate(tools, rep)
		if len(order) != 3 {
			t.Fatalf("rotate dropped tools: %v", order)
		}
		firsts = append(firsts, order[0].Name())
	}
	if !slices.Equal(firsts, []string{ToolCrtool, ToolRunc, ToolPodman}) {
		t.Errorf("first tools by repetition: %v", firsts)
	}
}

func TestOptions(t *testing.T) {
	sizes, err := ParseSizes("64, 512,2G")
	if err != nil || !slices.Equal(sizes, []int{64, 512, 2048}) {
		t.Errorf("ParseSizes: %v %v", sizes, err)
	}
	for _, bad := range []string{"x", "0", "-5", "1.5"} {
		if _, err := ParseSizes(bad); err == nil {
			t.Errorf("ParseSizes(%q) accepted", bad)
		}
	}
	if got := ParseTools("crtool, runc,Podman,crtool"); !slices.Equal(got, []string{ToolCrtool, ToolRunc, ToolPodman}) {
		t.Errorf("ParseTools: %v", got)
	}
	o := DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	for name, mod := range map[string]func(*Options){
		"no runs":      func(o *Options) { o.Runs = 0 },
		"unknown tool": func(o *Options) { o.Tools = []string{"docker"} },
		"small":        func(o *Options) { o.Small = "nginx" },
		"nothing":      func(o *Options) { o.Sizes = nil },
	} {
		o := DefaultOptions()
		mod(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestDataMixMatchesMemhog compiles the workload and compares the memory
// it fills with the Go copy the compression limits use.
func TestDataMixMatchesMemhog(t *testing.T) {
	_, err := exec.LookPath("gcc")
	testutil.Require(t, err == nil, "gcc is not installed")
	dir := t.TempDir()
	src := filepath.Join(dir, "memhog.c")
	if err := os.WriteFile(src, memhogSource, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "memhog")
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-Werror", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	out, err := exec.Command(bin, "3", "--print").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := dataMix(3 << 20)
	if !bytes.Equal(out, want) {
		i := 0
		for i < len(out) && i < len(want) && out[i] == want[i] {
			i++
		}
		t.Fatalf("memhog's memory and dataMix differ at byte %d (lengths %d, %d)", i, len(out), len(want))
	}
}

func TestFormats(t *testing.T) {
	for v, want := range map[float64]string{0.2: "0.20 ms", 5.11: "5.1 ms", 845.1: "845 ms", 1554: "1.55 s", 62500: "62.5 s"} {
		if got := fmtMs(v); got != want {
			t.Errorf("fmtMs(%v) = %q, want %q", v, got, want)
		}
	}
	if got := fmtBytes(34726575); got != "33.1 MiB" {
		t.Errorf("fmtBytes = %q", got)
	}
	if got := fmtKiB(3 << 20); got != "3.00 GiB" {
		t.Errorf("fmtKiB = %q", got)
	}
}

// TestLauncherRSS checks that the rusage launcher reports the command's
// peak, not the benchmark's: exec would carry this test's 128 MiB over.
func TestLauncherRSS(t *testing.T) {
	_, err := exec.LookPath("gcc")
	testutil.Require(t, err == nil, "gcc is not installed")
	ballast := make([]byte, 128<<20)
	for i := range ballast {
		ballast[i] = byte(i)
	}
	launcher, err := buildLauncher(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	direct, err := run(t.Context(), command{name: "true"})
	if err != nil {
		t.Fatal(err)
	}
	launched, err := run(t.Context(), command{name: "true", launcher: launcher})
	if err != nil {
		t.Fatal(err)
	}
	if direct.maxRSS < 100<<10 {
		t.Logf("exec did not carry the ballast over (direct maxrss %d KiB): the launcher is not needed here", direct.maxRSS)
	}
	if launched.maxRSS <= 0 || launched.maxRSS > 16<<10 {
		t.Errorf("launched true: maxrss %d KiB, want a few MiB at most", launched.maxRSS)
	}
	if _, err := run(t.Context(), command{name: "sh", args: []string{"-c", "echo oops >&2; exit 3"}, launcher: launcher}); err == nil ||
		!strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "oops") {
		t.Errorf("a failing command through the launcher: %v", err)
	}
	_ = ballast[len(ballast)-1]
}
