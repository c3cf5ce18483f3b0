package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// podmanTool runs the workload with Podman (runc runtime, CRIU 4.2 first
// on PATH) in a bridge network of its own on a private /24, and uses
// podman container checkpoint --export / restore --import.
//
// Not --network none: Podman 4.3.1 restores such a container with its
// loopback down (runc created the namespace, CRIU restores it from the
// images without bringing lo up), so it would never answer.
type podmanTool struct {
	bin      string
	launcher string
	env      []string
	dir      string
	image    string
	network  string
	subnet   string
}

// newPodmanTool imports the workload image from rootfs and creates the
// network. On error it removes what it made.
func newPodmanTool(ctx context.Context, bin, conf, criuDir, rootfs, dir, runID, launcher string) (_ *podmanTool, err error) {
	t := &podmanTool{
		bin:      bin,
		launcher: launcher,
		env:      []string{"CONTAINERS_CONF=" + conf, "PATH=" + criuDir + ":" + os.Getenv("PATH")},
		dir:      dir,
	}
	defer func() {
		if err != nil {
			_ = t.Close()
		}
	}()
	tarball := filepath.Join(dir, "podman-rootfs.tar")
	if _, err := run(ctx, command{name: "tar", args: []string{"-C", rootfs, "-cf", tarball, "."}}); err != nil {
		return nil, err
	}
	defer os.Remove(tarball)
	image := "localhost/crtool-bench-" + runID
	if _, err := t.podman(ctx, "import", tarball, image); err != nil {
		return nil, fmt.Errorf("import the workload image: %w", err)
	}
	t.image = image
	subnet, err := t.freeSubnet(ctx)
	if err != nil {
		return nil, err
	}
	network := "crtool-bench-" + runID
	if _, err := t.podman(ctx, "network", "create", "--subnet", subnet, "--disable-dns", network); err != nil {
		return nil, err
	}
	t.network, t.subnet = network, subnet
	return t, nil
}

func (t *podmanTool) podman(ctx context.Context, args ...string) (*cmdResult, error) {
	return run(ctx, command{name: t.bin, args: args, env: t.env})
}

// freeSubnet picks a 10.203.X.0/24 that neither the host's routes nor
// another Podman network use.
func (t *podmanTool) freeSubnet(ctx context.Context) (string, error) {
	var used strings.Builder
	if out, err := exec.CommandContext(ctx, "ip", "-o", "route", "show", "table", "all").Output(); err == nil {
		used.Write(out)
	}
	if out, err := exec.CommandContext(ctx, "ip", "-o", "addr").Output(); err == nil {
		used.Write(out)
	}
	if r, err := t.podman(ctx, "network", "ls", "--format", "{{.Name}}"); err == nil {
		for _, name := range strings.Fields(r.stdout) {
			if ir, err := t.podman(ctx, "network", "inspect", name); err == nil {
				used.WriteString(ir.stdout)
			}
		}
	}
	start := 1 + rand.IntN(254)
	for i := 0; i < 254; i++ {
		x := 1 + (start+i)%254
		prefix := fmt.Sprintf("10.203.%d.", x)
		if !strings.Contains(used.String(), prefix) {
			return prefix + "0/24", nil
		}
	}
	return "", errors.New("no free 10.203.X.0/24 for the Podman network")
}

func (t *podmanTool) Name() string { return ToolPodman }

// Close removes the image and the network.
func (t *podmanTool) Close() error {
	ctx, cancel := cleanupContext()
	defer cancel()
	var errs []error
	if t.image != "" {
		if _, err := t.podman(ctx, "rmi", "-f", t.image); err != nil {
			errs = append(errs, err)
		}
	}
	if t.network != "" {
		if _, err := t.podman(ctx, "network", "rm", "-f", t.network); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t *podmanTool) Start(ctx context.Context, w Workload) (_ Container, err error) {
	c := &podmanContainer{t: t, w: w, name: uniqueID("crb-p-")}
	c.dir = filepath.Join(t.dir, c.name)
	defer func() {
		if err != nil {
			c.Cleanup()
		}
	}()
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, err
	}
	args := append([]string{"run", "-d", "--network", t.network, "--name", c.name, t.image}, w.Args...)
	if _, err := t.podman(ctx, args...); err != nil {
		return nil, err
	}
	if err := c.lookupNetns(ctx); err != nil {
		return nil, err
	}
	if _, err := waitAnswer(ctx, c.netnsPath, w, w.startTimeout()); err != nil {
		return nil, fmt.Errorf("podman container %s does not answer: %w", c.name, err)
	}
	return c, nil
}

type podmanContainer struct {
	t         *podmanTool
	w         Workload
	name      string
	dir       string
	netnsPath string
	archive   string
}

// lookupNetns finds the container's network namespace.
func (c *podmanContainer) lookupNetns(ctx context.Context) error {
	r, err := c.t.podman(ctx, "inspect", "--format", "{{.NetworkSettings.SandboxKey}} {{.State.Pid}}", c.name)
	if err != nil {
		return err
	}
	f := strings.Fields(r.stdout)
	switch {
	case len(f) == 2:
		c.netnsPath = f[0]
	case len(f) == 1 && f[0] != "0":
		c.netnsPath = "/proc/" + f[0] + "/ns/net"
	default:
		return fmt.Errorf("podman inspect %s: no network namespace in %q", c.name, r.stdout)
	}
	return nil
}

func (c *podmanContainer) Dump(ctx context.Context, format string) (Metrics, error) {
	c.archive = filepath.Join(c.dir, "dump"+archiveExt(format))
	r, err := run(ctx, command{name: c.t.bin, env: c.t.env, launcher: c.t.launcher, args: []string{"container", "checkpoint",
		"--export", c.archive, "--compress", format, "--print-stats", c.name}})
	if err != nil {
		return nil, err
	}
	m := Metrics{
		"dump_wall_ms": ms(r.wall),
		"dump_rss_kib": float64(r.maxRSS),
	}
	if err := podmanDumpMetrics(r.stdout, m); err != nil {
		return nil, err
	}
	st, err := os.Stat(c.archive)
	if err != nil {
		return nil, err
	}
	m["archive_bytes"] = float64(st.Size())
	rm, err := c.t.podman(ctx, "rm", c.name)
	if err != nil {
		return nil, err
	}
	m["podman_rm_ms"] = ms(rm.wall)
	return m, nil
}

func (c *podmanContainer) Restore(ctx context.Context) (Metrics, error) {
	if c.archive == "" {
		return nil, errors.New("restore before dump")
	}
	r, err := run(ctx, command{name: c.t.bin, env: c.t.env, launcher: c.t.launcher, args: []string{"container", "restore",
		"--import", c.archive, "--print-stats"}})
	if err != nil {
		return nil, err
	}
	m := Metrics{
		"restore_wall_ms": ms(r.wall),
		"restore_rss_kib": float64(r.maxRSS),
	}
	if err := podmanRestoreMetrics(r.stdout, m); err != nil {
		return nil, err
	}
	// The restored container has a new namespace; finding it is the
	// benchmark's business, not part of the restore.
	if err := c.lookupNetns(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *podmanContainer) Answer(ctx context.Context) (time.Duration, error) {
	return waitAnswer(ctx, c.netnsPath, c.w, answerTimeout)
}

func (c *podmanContainer) Cleanup() []error {
	ctx, cancel := cleanupContext()
	defer cancel()
	var errs []error
	if _, err := c.t.podman(ctx, "container", "exists", c.name); err == nil {
		if _, err := c.t.podman(ctx, "rm", "-f", "-t", "0", c.name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	return errs
}
