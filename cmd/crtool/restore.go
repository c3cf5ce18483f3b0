package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/crtool/crtool/restore"
)

func restoreCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:      "restore",
		Usage:     "restore a container from an archive",
		ArgsUsage: " ",
		Description: `Unpacks the archive (gzip, zstd or plain tar, detected by content; or
a checkpoint image file, the OCI image archive crtool image or podman save
writes, whose one layer is checked against its manifest's digest),
recreates the container's cgroups, maps its external mounts and stdio back,
and has CRIU restore its processes, which keep running after crtool exits.
Prints the restored init's PID on stdout. A failed restore removes what it
created and leaves the archive untouched.

The network namespace: with --netns the container joins that namespace;
otherwise it joins the recorded /run/netns/NAME if that still exists (and
holds the container's addresses), else crtool builds a new namespace from
the archive: links (veth with the recorded name, MAC and MTU, its host end on
the recorded bridge or --bridge), addresses, routes, rules, neighbours and
sysctls. With --tcp-established a drop-all lock keeps the namespace silent
until CRIU has restored the connections, so peers see no reset.

When the recorded root filesystem is gone and the archive records it as an
image plus changes (a container Podman started), crtool mounts the image
from this host's Podman storage (or takes --root as the image's root
filesystem) as the lower layer of an overlay under
/var/lib/crtool/containers/NAME and applies the archive's changes. The
container's private files (its /etc/hosts, /etc/hostname, /etc/resolv.conf,
/run/.containerenv, /dev/shm) come from the archive and are recreated
there too; other bind mounts (volumes) must exist at their recorded path.
A missing recorded bridge is created with its recorded addresses. Published
ports (recorded from Podman's -p, or --publish) are set up again with
nftables DNAT in the table inet crtool-ports-NAME, 127.0.0.1 included.

Archives written by Podman, CRI-O or the kubelet restore too, on their
image from Podman's storage or --root naming the root filesystem of their
image: it is never modified; the container runs on an overlay of it (under /var/lib/crtool/containers/NAME)
that carries the archive's rootfs-diff.tar and deleted.files, with
/etc/hosts, /etc/resolv.conf, /etc/hostname and /dev/shm of its own, and its
network rebuilt from network.status (pass --bridge, and --peer-netns unless
the host end belongs in this host's namespace).

Before it creates anything, restore compares the CPU with what the
checkpoint needs: the extended registers each process had in use (AVX,
AVX-512, ...) and, for crtool's archives, the features of the CPU it was
dumped on, for which the processes chose their code when they started. A
checkpoint that needs features this CPU lacks is refused, naming them;
--skip-cpu-check restores it anyway.

Descriptors that led to a pipe outside the container (a supervisor's) are
reconnected to --log for writing ends, /dev/null otherwise; files are
reopened at their recorded path, and bind mounts come from their recorded
source, only where --allow-host-path allows it (/dev/null needs none).

An archive is untrusted input: crtool refuses one that would have the
container share the host's namespaces (unless --allow-host-namespaces), be
rooted at / or a system directory (unless --root), or be handed host paths,
devices or sysctls beyond its own network namespace. See README.md, "Trust
model".

Example:
   crtool restore -f web.tar.gz --name my-web-restored`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f", "i", "import"}, Usage: "archive to restore (\"-\": stdin)"},
			&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "name of the restored container (default: the recorded one)"},
			&cli.StringFlag{Name: "root", Usage: "root filesystem of the container (default: the recorded path)"},
			&cli.StringFlag{Name: "netns", Usage: "join this existing network namespace (a /run/netns/NAME or /proc/PID/ns/net path)"},
			&cli.StringFlag{Name: "bridge", Usage: "attach a rebuilt network namespace's veth to this bridge instead of the recorded one"},
			&cli.BoolFlag{Name: "create-bridge", Usage: "create the --bridge if it is missing (the recorded bridge is created, with its recorded addresses, without it)"},
			&cli.StringFlag{Name: "peer-netns", Usage: "namespace for the host end of a rebuilt veth (default: the recorded one; this host's for archives crtool did not write)"},
			&cli.StringSliceFlag{Name: "publish", Aliases: []string{"p"}, Usage: "publish a port HOSTPORT:CONTAINERPORT[/tcp|udp] besides (or instead of, by host port) the recorded ones"},
			&cli.StringSliceFlag{Name: "volume", Usage: "bind the container's volume at DEST from SRC instead of its recorded source (SRC:DEST)"},
			&cli.StringFlag{Name: "pid-file", Usage: "write the restored init's PID to this file"},
			&cli.BoolFlag{Name: "tcp-established", Usage: "restore established TCP connections (needed when the dump had them)"},
			&cli.StringFlag{Name: "log", Usage: "file that receives what the container writes to its former supervisor's pipes (default: /dev/null)"},
			&cli.BoolFlag{Name: "print-stats", Usage: "print crtool's and CRIU's statistics as JSON on stdout (after the PID)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "check the archive against this host, print what a restore would create and every blocker, and change nothing (exit 0 when a restore would start)"},
			&cli.BoolFlag{Name: "skip-cpu-check", Usage: "restore even when the checkpoint needs CPU features this host lacks (its processes may die with SIGILL)"},
			&cli.BoolFlag{Name: "allow-host-namespaces", Usage: "restore a process tree that shares the host's pid, mount, network, UTS or IPC namespace"},
			&cli.StringSliceFlag{Name: "allow-host-path", Usage: "hand the container this host file or directory (and what is below it) when the archive names it as an external file or bind-mount source (repeatable)"},
			&cli.BoolFlag{Name: "allow-devices", Usage: "create the device nodes of a foreign archive's rootfs-diff.tar in the container's root filesystem"},
			&cli.StringFlag{Name: "keep-images", Usage: "keep the unpacked image directory here (a new or empty directory)"},
			&cli.BoolFlag{Name: "lazy-pages", Usage: "restore an archive of crtool dump --lazy-pages: the container resumes at once, its memory follows from the source while it runs (crtool prints the PID, then returns when all memory is in)"},
			&cli.StringFlag{Name: "cgroup", Usage: "put the container into this cgroup path (on every controller) instead of the recorded one"},
			&cli.StringFlag{Name: "page-server", Usage: "ADDRESS:PORT of the source's page server (default: the one the archive records)"},
			workDirFlag,
			criuFlag,
			verboseFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("restore takes no arguments (got %q): use -f ARCHIVE", c.Args().First())}
			}
			opts := restore.Options{
				Input:               c.String("file"),
				Name:                c.String("name"),
				Root:                c.String("root"),
				Netns:               c.String("netns"),
				PidFile:             c.String("pid-file"),
				TCPEstablished:      c.Bool("tcp-established"),
				KeepImages:          c.String("keep-images"),
				WorkDir:             c.String("work-dir"),
				CRIUPath:            c.String("criu"),
				SkipCPUCheck:        c.Bool("skip-cpu-check"),
				DryRun:              c.Bool("dry-run"),
				Log:                 c.String("log"),
				Bridge:              c.String("bridge"),
				CreateBridge:        c.Bool("create-bridge"),
				PeerNetns:           c.String("peer-netns"),
				AllowHostNamespaces: c.Bool("allow-host-namespaces"),
				AllowHostPath:       c.StringSlice("allow-host-path"),
				AllowDevices:        c.Bool("allow-devices"),
				LazyPages:           c.Bool("lazy-pages"),
				PageServer:          c.String("page-server"),
				Cgroup:              c.String("cgroup"),
				Logf:                logger(c),
				Warnf:               warner(c),
			}
			ports, err := parsePorts(c.StringSlice("publish"))
			if err != nil {
				return usageError{err}
			}
			opts.Publish = ports
			if opts.Volumes, err = parseVolumes(c.StringSlice("volume")); err != nil {
				return usageError{err}
			}
			if err := opts.Validate(); err != nil {
				return usageError{err}
			}
			bar := newBar(terminal(c.App.ErrWriter), "reading "+filepath.Base(opts.Input))
			opts.Progress = bar.callback()
			res, err := restore.Run(c.Context, opts)
			bar.Done()
			if err != nil {
				return err
			}
			if opts.DryRun {
				printPlan(c.App.Writer, res)
				return nil
			}
			fmt.Fprintln(c.App.Writer, res.PID)
			if c.Bool("print-stats") {
				if err := printRestoreStats(c.App.Writer, res); err != nil {
					return err
				}
			}
			fmt.Fprintf(c.App.ErrWriter, "crtool: restored %s as pid %d in %s\n", res.Name, res.PID, res.Duration.Round(time.Millisecond))
			if res.Transfer != nil {
				// Whoever reads the PID may go on while the memory moves.
				if f, ok := c.App.Writer.(interface{ Sync() error }); ok {
					_ = f.Sync()
				}
				if err := res.Transfer.Wait(); err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "crtool: all memory of %s received in %s\n", res.Name, res.Transfer.Took.Round(time.Millisecond))
			}
			return nil
		},
	})
}

// printPlan shows what a restore would create, for --dry-run.
func printPlan(w io.Writer, res *restore.Result) {
	fmt.Fprintf(w, "would restore %s (no blockers found)\n", res.Name)
	if res.Plan == nil {
		return
	}
	for _, c := range res.Plan.Creates {
		fmt.Fprintf(w, "would create: %s\n", c)
	}
	for _, warn := range res.Plan.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}

// parseVolumes reads --volume SRC:DEST values into DEST -> SRC.
func parseVolumes(specs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range specs {
		src, dest, ok := strings.Cut(s, ":")
		if !ok || !filepath.IsAbs(src) || !strings.HasPrefix(dest, "/") {
			return nil, fmt.Errorf("--volume %q: give SRC:DEST, both absolute paths", s)
		}
		out[dest] = src
	}
	return out, nil
}
