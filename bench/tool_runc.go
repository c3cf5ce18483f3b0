package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// runcTool is the do-it-yourself baseline: runc checkpoint into an image
// directory, then tar it; tar x, then runc restore.
type runcTool struct{ env *runcEnv }

func (t *runcTool) Name() string { return ToolRunc }
func (t *runcTool) Close() error { return nil }

func (t *runcTool) Start(ctx context.Context, w Workload) (Container, error) {
	bc, err := t.env.start(ctx, w, "crb-r-")
	if err != nil {
		return nil, err
	}
	return &runcContainer{bundleContainer: bc}, nil
}

type runcContainer struct {
	*bundleContainer
	archive string
	format  string
}

// tarArgs compresses as a user would type it: tar czf, tar --zstd -cf.
func tarArgs(format, dir, archive string, extract bool) []string {
	op := "-cf"
	if extract {
		op = "-xf"
	}
	c := "-z"
	if format == FormatZstd {
		c = "--zstd"
	}
	if extract {
		return []string{"-C", dir, c, op, archive}
	}
	return []string{"-C", dir, c, op, archive, "."}
}

func (c *runcContainer) Dump(ctx context.Context, format string) (Metrics, error) {
	img := filepath.Join(c.dir, "images")
	c.archive = filepath.Join(c.dir, "dump"+archiveExt(format))
	c.format = format
	start := time.Now()
	cp, err := run(ctx, command{name: c.env.runc, args: c.runcArgs("checkpoint", "--image-path", img, c.id), launcher: c.env.launcher})
	if err != nil {
		return nil, fmt.Errorf("%w%s", err, tail(c.readLog(), 1500))
	}
	tr, err := run(ctx, command{name: "tar", args: tarArgs(format, img, c.archive, false), launcher: c.env.launcher})
	if err != nil {
		return nil, err
	}
	m := Metrics{
		"dump_wall_ms":  ms(time.Since(start)),
		"dump_criu_ms":  ms(cp.wall),
		"dump_write_ms": ms(tr.wall),
		"dump_rss_kib":  float64(max(cp.maxRSS, tr.maxRSS)),
	}
	if err := criuDumpStats(img, m); err != nil {
		return nil, err
	}
	st, err := os.Stat(c.archive)
	if err != nil {
		return nil, err
	}
	m["archive_bytes"] = float64(st.Size())
	// The archive is what travels; the image directory goes.
	if err := os.RemoveAll(img); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *runcContainer) Restore(ctx context.Context) (Metrics, error) {
	if c.archive == "" {
		return nil, errors.New("restore before dump")
	}
	img := filepath.Join(c.dir, "restore-images")
	if err := os.MkdirAll(img, 0o700); err != nil {
		return nil, err
	}
	start := time.Now()
	tr, err := run(ctx, command{name: "tar", args: tarArgs(c.format, img, c.archive, true), launcher: c.env.launcher})
	if err != nil {
		return nil, err
	}
	rr, err := run(ctx, command{name: c.env.runc, null: true, launcher: c.env.launcher,
		args: c.runcArgs("restore", "-d", "--image-path", img, "--bundle", c.bundle, c.id)})
	if err != nil {
		return nil, fmt.Errorf("%w%s", err, tail(c.readLog(), 1500))
	}
	m := Metrics{
		"restore_wall_ms":   ms(time.Since(start)),
		"restore_unpack_ms": ms(tr.wall),
		"restore_criu_ms":   ms(rr.wall),
		"restore_rss_kib":   float64(max(tr.maxRSS, rr.maxRSS)),
	}
	if err := criuRestoreStats(img, m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *runcContainer) Answer(ctx context.Context) (time.Duration, error) {
	return waitAnswer(ctx, c.netnsPath, c.w, answerTimeout)
}

func (c *runcContainer) Cleanup() []error { return c.cleanup() }
