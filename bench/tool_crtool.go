package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// crtoolTool dumps and restores runc containers with the crtool binary.
type crtoolTool struct {
	env          *runcEnv
	bin          string
	printStats   bool // crtool dump has --print-stats
	restoreStats bool // crtool restore has --print-stats
	staged       bool // dump with --stage-pages
}

// newCrtoolTool checks the binary and what its dump command offers.
func newCrtoolTool(ctx context.Context, env *runcEnv, bin string) (*crtoolTool, error) {
	has := func(cmd, flag string) (bool, error) {
		r, err := run(ctx, command{name: bin, args: []string{cmd, "--help"}})
		if err != nil {
			return false, fmt.Errorf("crtool binary %s does not run (make build): %w", bin, err)
		}
		return strings.Contains(r.stdout+r.stderrText(), flag), nil
	}
	t := &crtoolTool{env: env, bin: bin}
	var err error
	if t.printStats, err = has("dump", "--print-stats"); err != nil {
		return nil, err
	}
	if t.restoreStats, err = has("restore", "--print-stats"); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *crtoolTool) Name() string {
	if t.staged {
		return ToolCrtoolStaged
	}
	return ToolCrtool
}
func (t *crtoolTool) Close() error { return nil }

func (t *crtoolTool) Start(ctx context.Context, w Workload) (Container, error) {
	bc, err := t.env.start(ctx, w, "crb-c-")
	if err != nil {
		return nil, err
	}
	return &crtoolContainer{bundleContainer: bc, t: t}, nil
}

type crtoolContainer struct {
	*bundleContainer
	t       *crtoolTool
	archive string
}

func (c *crtoolContainer) workDir() string { return filepath.Join(c.dir, "work") }

func (c *crtoolContainer) Dump(ctx context.Context, format string) (Metrics, error) {
	c.archive = filepath.Join(c.dir, "dump"+archiveExt(format))
	if err := os.MkdirAll(c.workDir(), 0o700); err != nil {
		return nil, err
	}
	args := []string{"dump", "-v", "--pid", strconv.Itoa(c.pid), "-f", c.archive,
		"--runtime-root", c.runcRoot, "--work-dir", c.workDir(), "--criu", c.env.criu}
	if c.t.printStats {
		args = append(args, "--print-stats")
	}
	if c.t.staged {
		args = append(args, "--stage-pages")
	}
	r, err := run(ctx, command{name: c.t.bin, args: args, hwm: true, launcher: c.env.launcher})
	if err != nil {
		return nil, err
	}
	m := Metrics{
		"dump_wall_ms":      ms(r.wall),
		"dump_rss_kib":      float64(r.maxRSS),
		"dump_self_hwm_kib": float64(r.hwm),
	}
	s, serr := parseDumpSummary(r.stderrText())
	if serr == nil {
		m["dump_freezing_ms"] = ms(s.Freezing)
		m["dump_frozen_ms"] = ms(s.Frozen)
		m["dump_criu_ms"] = ms(s.CRIU)
		m["dump_write_ms"] = ms(s.Archive)
	}
	if c.t.printStats {
		if err := crtoolStatsMetrics(r.stdout, m); err != nil && serr != nil {
			return nil, fmt.Errorf("crtool dump statistics: %w; %w", serr, err)
		}
	} else if serr != nil {
		return nil, fmt.Errorf("crtool dump: %w", serr)
	}
	st, err := os.Stat(c.archive)
	if err != nil {
		return nil, err
	}
	m["archive_bytes"] = float64(st.Size())
	// The dump killed the container; runc still has its state, which
	// goes (with the cgroup: crtool recreates it from the archive).
	if _, err := run(ctx, command{name: c.env.runc, args: c.runcArgs("delete", "-f", c.id)}); err != nil {
		return nil, fmt.Errorf("after crtool dump: %w", err)
	}
	return m, nil
}

func (c *crtoolContainer) Restore(ctx context.Context) (Metrics, error) {
	if c.archive == "" {
		return nil, errors.New("restore before dump")
	}
	args := []string{"restore", "-v", "-f", c.archive, "--work-dir", c.workDir(), "--criu", c.env.criu}
	if c.t.restoreStats {
		args = append(args, "--print-stats")
	}
	r, err := run(ctx, command{name: c.t.bin, hwm: true, launcher: c.env.launcher, args: args})
	if err != nil {
		return nil, err
	}
	m := Metrics{
		"restore_wall_ms":      ms(r.wall),
		"restore_rss_kib":      float64(r.maxRSS),
		"restore_self_hwm_kib": float64(r.hwm),
	}
	// The PID comes first on stdout, the statistics (if asked) after it.
	first, rest, _ := strings.Cut(r.stdout, "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return nil, fmt.Errorf("crtool restore printed %q, want a PID", r.stdout)
	}
	c.pid = pid
	// -v logs "restoring NAME" once the archive is unpacked and CRIU is
	// about to start.
	for _, l := range r.stderr {
		if strings.HasPrefix(l.Text, "crtool: restoring ") {
			m["restore_unpack_ms"] = ms(l.At)
			m["restore_criu_ms"] = ms(r.wall - l.At)
			break
		}
	}
	if c.t.restoreStats {
		if err := crtoolRestoreStatsMetrics(rest, m); err != nil {
			return nil, fmt.Errorf("crtool restore --print-stats: %w", err)
		}
	}
	return m, nil
}

func (c *crtoolContainer) Answer(ctx context.Context) (time.Duration, error) {
	return waitAnswer(ctx, c.netnsPath, c.w, answerTimeout)
}

func (c *crtoolContainer) Cleanup() []error { return c.cleanup() }

// archiveExt is the file name suffix of an archive format.
func archiveExt(format string) string {
	if format == FormatZstd {
		return ".tar.zst"
	}
	return ".tar.gz"
}
