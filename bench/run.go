package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrMeasurement reports that at least one cell failed; the table and the
// report are complete otherwise.
var ErrMeasurement = errors.New("some measurements failed")

// bencher holds one run's state.
type bencher struct {
	opts   Options
	runID  string
	dir    string // the run's own directory, removed at the end
	report *Report
	tools  []Tool
}

func (b *bencher) logf(format string, args ...any) {
	fmt.Fprintf(b.opts.Log, "bench: "+format+"\n", args...)
}

// Run measures what opts ask for, writes the table to opts.Out (and the
// report to opts.JSON) and returns the report. Everything the run creates
// is removed before it returns, also when ctx is cancelled. Missed targets
// are not errors; failed measurements are (ErrMeasurement), after the
// table was written.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark needs root: runc, CRIU, network namespaces and cgroups")
	}
	b := &bencher{opts: opts, runID: uniqueID("")}
	b.report = &Report{Version: 1, Started: time.Now().UTC(), Errors: []string{}}
	if err := b.resolve(); err != nil {
		return nil, err
	}
	if err := b.makeDir(); err != nil {
		return nil, err
	}
	defer b.removeDir()
	defer removeCgroupParent("crtool-bench-" + b.runID)
	defer b.closeTools()

	b.report.Host = hostInfo(ctx, b.opts)
	b.fillOptions()
	err := b.measure(ctx)
	b.report.Host.LoadEnd = loadAvg()
	b.report.computeMedians()
	b.report.Targets = evaluateTargets(b.report)
	RenderTable(b.opts.Out, b.report)
	if b.opts.JSON != "" {
		if jerr := b.report.WriteJSON(b.opts.JSON); jerr != nil {
			err = errors.Join(err, jerr)
		} else {
			b.logf("wrote %s", b.opts.JSON)
		}
	}
	if err != nil {
		return b.report, err
	}
	if len(b.report.Errors) > 0 {
		return b.report, fmt.Errorf("%w: %d, listed above", ErrMeasurement, len(b.report.Errors))
	}
	return b.report, nil
}

// resolve finds the binaries, and drops Podman with one line if it is
// not installed.
func (b *bencher) resolve() error {
	o := &b.opts
	var err error
	if o.Crtool, err = filepath.Abs(o.Crtool); err != nil {
		return err
	}
	if _, err := os.Stat(o.Crtool); err != nil && (slices.Contains(o.Tools, ToolCrtool) || slices.Contains(o.Tools, ToolCrtoolStaged) || slices.Contains(o.Tools, ToolCrtoolLazy)) {
		return fmt.Errorf("crtool binary: %w: run make build or pass -crtool PATH", err)
	}
	if o.Runc, err = exec.LookPath(o.Runc); err != nil {
		return fmt.Errorf("runc: %w: run make deps", err)
	}
	if _, err := os.Stat(o.CRIU); err != nil {
		return fmt.Errorf("CRIU: %w: run make deps or pass -criu PATH", err)
	}
	for _, tool := range []string{"gcc", "tar", "gzip", "zstd", "ip", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed: %w", tool, err)
		}
	}
	if slices.Contains(o.Tools, ToolPodman) {
		p := o.Podman
		if p == "" {
			p = "podman"
		}
		if o.Podman, err = exec.LookPath(p); err != nil {
			b.logf("podman is not installed: skipping the Podman columns (make bench installs it with deps-podman)")
			o.Tools = slices.DeleteFunc(slices.Clone(o.Tools), func(t string) bool { return t == ToolPodman })
			o.Podman = ""
		}
	}
	if len(o.Tools) == 0 {
		return errors.New("no tool left to measure")
	}
	return nil
}

// makeDir creates the run's directory below -workdir (default /var/tmp)
// after checking there is room for the largest size.
func (b *bencher) makeDir() error {
	base := b.opts.WorkDir
	if base == "" {
		base = "/var/tmp"
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	need := diskNeed(b.opts)
	if err := checkFree(base, need, "-workdir"); err != nil {
		return err
	}
	// Podman keeps its checkpoint and restore copies in its storage; the
	// cells run one at a time, so one disk holding both needs no more.
	if store := "/var/lib/containers/storage"; slices.Contains(b.opts.Tools, ToolPodman) && !sameFS(base, store) {
		if err := checkFree(store, need-diskFixed, "Podman's storage"); err != nil {
			return err
		}
	}
	if avail := memAvailable(); avail > 0 && avail < 3*largestSize(b.opts)<<20 {
		b.logf("warning: only %s of memory available; the largest size wants about %s (container, CRIU, page cache)",
			fmtBytes(float64(avail)), fmtBytes(float64(3*largestSize(b.opts)<<20)))
	}
	dir, err := os.MkdirTemp(base, "crtool-bench-")
	if err != nil {
		return err
	}
	b.dir = dir
	b.logf("work directory %s (removed at the end)", dir)
	return nil
}

const diskFixed = int64(2) << 30 // machine limits' files and slack

// diskNeed estimates the peak disk use of one cell of the largest size:
// CRIU's images, the archive and the unpacked images again (Podman keeps
// its copies in its storage), plus the machine limits' files.
func diskNeed(o Options) int64 {
	return largestSize(o)<<20*3 + diskFixed
}

// largestSize is the largest workload in MiB (a small one counts 64).
func largestSize(o Options) int64 {
	largest := 64
	for _, s := range o.Sizes {
		largest = max(largest, s)
	}
	return int64(largest)
}

// memAvailable is /proc/meminfo's MemAvailable in bytes, 0 if unknown.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	kb, err := strconv.ParseInt(strings.Fields(procField(b, "MemAvailable") + " 0")[0], 10, 64)
	if err != nil {
		return 0
	}
	return kb << 10
}

func checkFree(path string, need int64, what string) error {
	for p := path; p != "/" && p != "."; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			path = p
			break
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("free space on %s: %w", path, err)
	}
	free := int64(st.Bavail) * st.Bsize
	if free < need {
		return fmt.Errorf("%s (%s) has %s free, the largest size needs about %s: free some space or pass -workdir on a bigger disk",
			what, path, fmtBytes(float64(free)), fmtBytes(float64(need)))
	}
	return nil
}

func sameFS(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return true // assume the worst
	}
	return sa.Dev == sb.Dev
}

func (b *bencher) removeDir() {
	if b.dir == "" {
		return
	}
	if err := os.RemoveAll(b.dir); err != nil {
		b.logf("remove %s: %v", b.dir, err)
	}
}

func (b *bencher) closeTools() {
	for _, t := range b.tools {
		if err := t.Close(); err != nil {
			b.logf("%s: cleanup: %v", t.Name(), err)
		}
	}
}

func (b *bencher) fillOptions() {
	o := &b.report.Options
	o.Sizes, o.Runs, o.Small, o.Tools, o.WorkDir = b.opts.Sizes, b.opts.Runs, b.opts.Small, b.opts.Tools, b.dir
	b.report.tools = b.opts.Tools
	if b.opts.Small == "httpd" {
		b.report.workloads = append(b.report.workloads, HttpdWorkload())
	}
	for _, s := range b.opts.Sizes {
		b.report.workloads = append(b.report.workloads, MemWorkload(s))
	}
}

// measure builds the workload, measures the machine and runs every cell.
func (b *bencher) measure(ctx context.Context) error {
	rootfs := filepath.Join(b.dir, "rootfs")
	b.logf("building the workload (gcc -O2 -static) and a busybox root filesystem")
	if err := buildRootfs(ctx, rootfs, "/bin/busybox"); err != nil {
		return err
	}
	launcher, err := buildLauncher(ctx, b.dir)
	if err != nil {
		return err
	}
	if b.opts.Limits {
		m, err := measureMachine(ctx, b.dir, b.logf)
		if err != nil {
			return fmt.Errorf("machine limits: %w", err)
		}
		b.report.Machine = m
	}
	if err := b.setupTools(ctx, rootfs, launcher); err != nil {
		return err
	}
	total := len(b.report.workloads) * b.opts.Runs * len(Formats) * len(b.tools)
	seq := 0
	for _, w := range b.report.workloads {
		for rep := 0; rep < b.opts.Runs; rep++ {
			formats := slices.Clone(Formats)
			if rep%2 == 1 {
				slices.Reverse(formats)
			}
			order := rotate(b.tools, rep)
			for _, f := range formats {
				for _, t := range order {
					if err := ctx.Err(); err != nil {
						return err
					}
					seq++
					s := b.cell(ctx, t, w, f, rep, seq)
					b.report.Samples = append(b.report.Samples, s)
					b.progress(s, total)
				}
			}
		}
	}
	return ctx.Err()
}

func yesNo(b bool) string {
	if b {
		return "used"
	}
	return "missing"
}

// rotate starts the tools' order at the rep-th, so that drift during a
// run hits each tool in every position.
func rotate(tools []Tool, rep int) []Tool {
	n := len(tools)
	out := make([]Tool, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, tools[(i+rep)%n])
	}
	return out
}

func (b *bencher) setupTools(ctx context.Context, rootfs, launcher string) error {
	env := &runcEnv{runc: b.opts.Runc, criu: b.opts.CRIU, rootfs: rootfs, dir: b.dir,
		cgroupParent: "crtool-bench-" + b.runID, launcher: launcher}
	for _, name := range b.opts.Tools {
		switch name {
		case ToolCrtool, ToolCrtoolStaged:
			t, err := newCrtoolTool(ctx, env, b.opts.Crtool)
			if err != nil {
				return err
			}
			t.staged = name == ToolCrtoolStaged
			b.logf("crtool: dump --print-stats %s, restore --print-stats %s (else its -v lines are read)",
				yesNo(t.printStats), yesNo(t.restoreStats))
			b.tools = append(b.tools, t)
		case ToolCrtoolLazy:
			b.tools = append(b.tools, &crtoolLazyTool{env: env, bin: b.opts.Crtool})
		case ToolRunc:
			b.tools = append(b.tools, &runcTool{env: env})
		case ToolPodman:
			b.logf("podman: importing the workload image and creating a network on a private /24")
			t, err := newPodmanTool(ctx, b.opts.Podman, b.opts.PodmanConf, filepath.Dir(b.opts.CRIU), rootfs, b.dir, b.runID, launcher)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				b.report.Errors = append(b.report.Errors, fmt.Sprintf("podman setup: %v", err))
				b.logf("podman setup failed, skipping Podman: %v", err)
				continue
			}
			b.logf("podman: image %s, network %s (%s)", t.image, t.network, t.subnet)
			b.tools = append(b.tools, t)
		}
	}
	names := make([]string, 0, len(b.tools))
	for _, t := range b.tools {
		names = append(names, t.Name())
	}
	b.report.tools = names
	b.report.Options.Tools = names
	return nil
}

// cell measures one fresh container: start, dump, restore, answer. It
// always removes the container again.
func (b *bencher) cell(ctx context.Context, tool Tool, w Workload, format string, rep, seq int) (s Sample) {
	s = Sample{Workload: w.Key, SizeMiB: w.SizeMiB, Tool: tool.Name(), Format: format, Run: rep, Seq: seq,
		Started: time.Now().UTC(), Metrics: Metrics{}}
	fail := func(step string, err error) Sample {
		s.Error = fmt.Sprintf("%s %s %s run %d: %s: %v", w.Key, tool.Name(), format, rep+1, step, err)
		b.report.Errors = append(b.report.Errors, s.Error)
		return s
	}
	// Each cell starts with no dirty pages of the one before.
	unix.Sync()
	start := time.Now()
	c, err := tool.Start(ctx, w)
	if err != nil {
		return fail("start", err)
	}
	defer func() {
		for _, err := range c.Cleanup() {
			b.report.Errors = append(b.report.Errors, fmt.Sprintf("%s %s cleanup: %v", w.Key, tool.Name(), err))
		}
	}()
	s.Metrics["start_ms"] = ms(time.Since(start))

	dctx, cancel := context.WithTimeout(ctx, w.opTimeout())
	dm, err := c.Dump(dctx, format)
	cancel()
	if err != nil {
		return fail("dump", err)
	}
	rctx, cancel := context.WithTimeout(ctx, w.opTimeout())
	rm, err := c.Restore(rctx)
	cancel()
	if err != nil {
		return fail("restore", err)
	}
	wait, err := c.Answer(ctx)
	if err != nil {
		return fail("answer after restore", err)
	}
	for k, v := range dm {
		s.Metrics[k] = v
	}
	for k, v := range rm {
		s.Metrics[k] = v
	}
	s.Metrics["answer_ms"] = rm["restore_wall_ms"] + ms(wait)
	// The container is out of service from the dump's start (it is
	// frozen at once) until the restored one answers.
	s.Metrics["downtime_ms"] = dm["dump_wall_ms"] + s.Metrics["answer_ms"]
	return s
}

func (b *bencher) progress(s Sample, total int) {
	head := fmt.Sprintf("[%d/%d] %s run %d/%d %s %s", s.Seq, total, s.Workload, s.Run+1, b.opts.Runs, s.Tool, s.Format)
	if s.Error != "" {
		b.logf("%s: FAILED: %s", head, s.Error)
		return
	}
	m := s.Metrics
	b.logf("%s: dump %s (%s), restore %s, answering after %s", head,
		fmtMs(m["dump_wall_ms"]), fmtBytes(m["archive_bytes"]), fmtMs(m["restore_wall_ms"]), fmtMs(m["answer_ms"]))
}

// hostInfo records the machine and the versions of what is measured.
func hostInfo(ctx context.Context, o Options) Host {
	h := Host{CPUs: runtime.NumCPU(), Versions: map[string]string{"go": runtime.Version()}, LoadStart: loadAvg()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		h.CPUModel = procField(b, "model name")
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kb, err := strconv.ParseInt(strings.Fields(procField(b, "MemTotal") + " 0")[0], 10, 64); err == nil {
			h.MemTotalBytes = kb << 10
		}
	}
	version := func(name string, args ...string) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return
		}
		line := strings.TrimSuffix(firstLine(strings.TrimSpace(string(out))), " …")
		if v, ok := strings.CutPrefix(line, "Version: "); ok { // criu --version
			line = name + " " + v
		}
		h.Versions[name] = line
	}
	version("crtool", o.Crtool, "--version")
	version("criu", o.CRIU, "--version")
	version("runc", o.Runc, "--version")
	if o.Podman != "" {
		version("podman", o.Podman, "--version")
	}
	return h
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// procField returns the value of the first "name: value" line.
func procField(b []byte, name string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
