package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// crtoolLazyTool migrates by post-copy on this host: crtool dump
// --lazy-pages serves the memory on loopback, crtool restore --lazy-pages
// restores into a namespace and cgroup of its own while the source still
// holds its own. Its Dump returns when the archive is complete, its
// Restore when the restored container runs; Answer then also waits for the
// last page and records the transfer.
type crtoolLazyTool struct {
	env *runcEnv
	bin string
}

func (t *crtoolLazyTool) Name() string { return ToolCrtoolLazy }
func (t *crtoolLazyTool) Close() error { return nil }

func (t *crtoolLazyTool) Start(ctx context.Context, w Workload) (Container, error) {
	bc, err := t.env.start(ctx, w, "crb-l-")
	if err != nil {
		return nil, err
	}
	return &lazyContainer{bundleContainer: bc, t: t}, nil
}

type lazyContainer struct {
	*bundleContainer
	t           *crtoolLazyTool
	archive     string
	dump        *exec.Cmd
	dumpDone    chan error
	restore     *exec.Cmd
	restoreDone chan error
	restoreAt   time.Time
	dst         *bundleContainer
	// rm is the map Restore returned: the cell copies it after Answer,
	// which adds the transfer's time to it.
	rm Metrics
}

// logTo opens a command's stderr log in the container's directory.
func (c *lazyContainer) logTo(name string) (*os.File, error) {
	return os.Create(filepath.Join(c.dir, name))
}

// logTail is the end of such a log, for an error.
func (c *lazyContainer) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name))
	return tail(string(b), 1500)
}

func (c *lazyContainer) Dump(ctx context.Context, format string) (Metrics, error) {
	c.archive = filepath.Join(c.dir, "lazy"+archiveExt(format))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	c.dump = exec.Command(c.t.bin, "dump", "-v", "--pid", strconv.Itoa(c.pid), "-f", c.archive,
		"--runtime-root", c.runcRoot, "--work-dir", c.dir, "--criu", c.env.criu,
		"--lazy-pages", "--page-server", addr)
	logf, err := c.logTo("dump.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	c.dump.Stderr = logf
	if err := c.dump.Start(); err != nil {
		return nil, err
	}
	c.dumpDone = make(chan error, 1)
	go func() { c.dumpDone <- c.dump.Wait() }()
	for {
		if _, err := os.Stat(c.archive); err == nil {
			break
		}
		select {
		case err := <-c.dumpDone:
			c.dumpDone <- err
			return nil, fmt.Errorf("crtool dump --lazy-pages ended before its archive was complete (%w)%s", err, c.logTail("dump.log"))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	st, err := os.Stat(c.archive)
	if err != nil {
		return nil, err
	}
	// Frozen from the start until the destination has the memory; what
	// counts as downtime is until the archive is complete.
	wall := ms(time.Since(start))
	return Metrics{"dump_wall_ms": wall, "dump_frozen_ms": wall, "archive_bytes": float64(st.Size())}, nil
}

func (c *lazyContainer) Restore(ctx context.Context) (Metrics, error) {
	if c.archive == "" {
		return nil, errors.New("restore before dump")
	}
	c.dst = &bundleContainer{env: c.env, w: c.w, id: c.id + "-dst", dir: c.dir, runcRoot: c.runcRoot,
		cgroupPath: c.cgroupPath + "-dst", netnsName: c.id + "-dst", netnsPath: "/run/netns/" + c.id + "-dst"}
	if _, err := run(ctx, command{name: "ip", args: []string{"netns", "add", c.dst.netnsName}}); err != nil {
		c.dst.netnsName = ""
		return nil, err
	}
	if _, err := run(ctx, command{name: "ip", args: []string{"-n", c.dst.netnsName, "link", "set", "lo", "up"}}); err != nil {
		return nil, err
	}
	c.restoreAt = time.Now()
	c.restore = exec.Command(c.t.bin, "restore", "-v", "-f", c.archive, "--work-dir", c.dir, "--criu", c.env.criu,
		"--lazy-pages", "--netns", c.dst.netnsPath, "--cgroup", c.dst.cgroupPath)
	logf, err := c.logTo("restore.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	c.restore.Stderr = logf
	out, err := c.restore.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.restore.Start(); err != nil {
		return nil, err
	}
	line, rerr := bufio.NewReader(out).ReadString('\n')
	wall := time.Since(c.restoreAt)
	c.restoreDone = make(chan error, 1)
	go func() { c.restoreDone <- c.restore.Wait() }()
	if rerr != nil {
		return nil, fmt.Errorf("crtool restore --lazy-pages printed no PID%s", c.logTail("restore.log"))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return nil, fmt.Errorf("crtool restore --lazy-pages printed %q, want a PID", line)
	}
	c.dst.pid = pid
	c.rm = Metrics{"restore_wall_ms": ms(wall)}
	return c.rm, nil
}

// Answer waits for the destination's first answer, then for the end of
// the transfer on both sides, and checks the container still answers.
func (c *lazyContainer) Answer(ctx context.Context) (time.Duration, error) {
	wait, err := waitAnswer(ctx, c.dst.netnsPath, c.w, answerTimeout)
	if err != nil {
		return 0, err
	}
	for _, side := range []struct {
		what string
		done chan error
		log  string
	}{{"restore", c.restoreDone, "restore.log"}, {"dump", c.dumpDone, "dump.log"}} {
		select {
		case err := <-side.done:
			side.done <- err
			if err != nil {
				return 0, fmt.Errorf("crtool %s --lazy-pages: %w%s", side.what, err, c.logTail(side.log))
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(c.w.opTimeout()):
			return 0, fmt.Errorf("crtool %s --lazy-pages did not finish", side.what)
		}
		if side.what == "restore" {
			c.rm["lazy_transfer_ms"] = ms(time.Since(c.restoreAt))
		}
	}
	if err := askOnce(c.dst.netnsPath, c.w); err != nil {
		return 0, fmt.Errorf("after the transfer: %w", err)
	}
	return wait, nil
}

func (c *lazyContainer) Cleanup() []error {
	for _, p := range []struct {
		cmd  *exec.Cmd
		done chan error
	}{{c.restore, c.restoreDone}, {c.dump, c.dumpDone}} {
		if p.cmd != nil && p.done != nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	var errs []error
	if c.dst != nil {
		errs = c.dst.cleanup()
	}
	return append(errs, c.cleanup()...)
}
