package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/units"

	"github.com/urfave/cli/v2"

	"github.com/crtool/crtool/containers"
	"github.com/crtool/crtool/dump"
	"github.com/crtool/crtool/format"
)

func dumpCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:      "dump",
		Aliases:   []string{"checkpoint"},
		Usage:     "checkpoint a running container into an archive",
		ArgsUsage: "[NAME]",
		Description: `Freezes the cgroup of the container whose init is --pid, has CRIU dump its
processes, and writes the images with the container's metadata into one
archive in Podman's checkpoint layout. The container stays frozen until the
archive is complete and synced; then it is stopped (or, with
--leave-running, thawed right after CRIU is done). If anything fails or the
dump is interrupted, the container is thawed and keeps running and no file
is left under the archive's name.

A container crtool restored is named instead of --pid: crtool dump [flags] NAME
(or --name NAME without --pid) finds its init through the record crtool ps
reads; a dump of it without --leave-running also removes it as crtool rm
does.

Example:
   crtool dump --pid 4242 -f web.tar.gz
   crtool dump -f web.tar.gz web`,
		BashComplete: completeNames,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "pid", Aliases: []string{"p"}, Usage: "PID of the container's init (the first process of its PID namespace or cgroup)"},
			&cli.StringFlag{Name: "file", Aliases: []string{"f", "e", "export"}, Usage: "archive to write (\"-\": stdout)"},
			&cli.StringFlag{Name: "compress", Aliases: []string{"c"}, Usage: "gzip, zstd or none (default: from the file name: .tar.gz/.tgz gzip, .tar.zst zstd, .tar none; else gzip)"},
			&cli.BoolFlag{Name: "leave-running", Aliases: []string{"R"}, Usage: "keep the container running after the dump"},
			&cli.BoolFlag{Name: "tcp-established", Usage: "dump established TCP connections (restore needs the same flag)"},
			&cli.StringFlag{Name: "name", Usage: "container name to record (default: the runtime's ID, else the cgroup's name)"},
			&cli.StringFlag{Name: "image", Usage: "image the container's root filesystem comes from (recorded for Podman's import, e.g. localhost/busybox:latest)"},
			&cli.StringFlag{Name: "rootfs-base", Usage: "the image's unmodified root filesystem: record the container's changes to it as rootfs-diff.tar and deleted.files (automatic for overlay roots, and with --image when Podman has the image)"},
			&cli.StringFlag{Name: "podman-network", Usage: "Podman network that podman container restore --import attaches the container to (default: the container's own when Podman started it, else podman)"},
			&cli.BoolFlag{Name: "with-rootfs", Usage: "put the container's whole root filesystem into the archive, so restore needs neither its image nor --root"},
			&cli.BoolFlag{Name: "export-volumes", Usage: "put the content of the container's volumes into the archive, for a restore on a host that lacks them"},
			&cli.StringSliceFlag{Name: "publish", Usage: "record a published port HOSTPORT:CONTAINERPORT[/tcp|udp] that restore sets up (Podman's are recorded without it)"},
			&cli.StringFlag{Name: "image-id", Usage: "ID of --image (default: looked up with podman image inspect)"},
			&cli.BoolFlag{Name: "lazy-pages", Usage: "post-copy: write everything but the container's private memory, then serve that on --page-server until crtool restore --lazy-pages has it all (the container stays frozen until then, and is then stopped)"},
			&cli.StringFlag{Name: "page-server", Usage: "ADDRESS:PORT to serve the memory on with --lazy-pages (one address; only a peer holding the archive is served)"},
			&cli.BoolFlag{Name: "stage-pages", Usage: "have CRIU write the memory pages into the work directory first, as before, instead of straight into the archive (always so with -f - and --keep-images)"},
			&cli.StringFlag{Name: "keep-images", Usage: "also keep CRIU's image directory here (a new or empty directory)"},
			workDirFlag,
			criuFlag,
			&cli.StringSliceFlag{Name: "runtime-root", Usage: "state directory of the OCI runtime that started the container, to find its bundle (default: /run/runc, /run/crun)"},
			&cli.BoolFlag{Name: "print-stats", Usage: "print crtool's and CRIU's statistics as JSON (on stdout; on stderr when the archive goes to stdout)"},
			&cli.DurationFlag{Name: "freeze-timeout", Value: 10 * time.Second, Usage: "give up (and thaw) if the cgroup is not frozen within this time"},
			verboseFlag,
		},
		Action: func(c *cli.Context) error {
			restored, err := restoredName(c)
			if err != nil {
				return err
			}
			opts := dump.Options{
				PID:            c.Int("pid"),
				Output:         c.String("file"),
				LeaveRunning:   c.Bool("leave-running"),
				TCPEstablished: c.Bool("tcp-established"),
				KeepImages:     c.String("keep-images"),
				WorkDir:        c.String("work-dir"),
				CRIUPath:       c.String("criu"),
				Name:           c.String("name"),
				Image:          c.String("image"),
				ImageID:        c.String("image-id"),
				RootfsBase:     c.String("rootfs-base"),
				WithRootfs:     c.Bool("with-rootfs"),
				ExportVolumes:  c.Bool("export-volumes"),
				PodmanNetwork:  c.String("podman-network"),
				RuntimeRoots:   c.StringSlice("runtime-root"),
				FreezeTimeout:  c.Duration("freeze-timeout"),
				StagePages:     c.Bool("stage-pages"),
				LazyPages:      c.Bool("lazy-pages"),
				PageServer:     c.String("page-server"),
				Logf:           logger(c),
				Warnf:          warner(c),
				Infof:          informer(c),
			}
			if restored != "" {
				init, err := containers.InitOf(restored)
				if err != nil {
					return err
				}
				opts.PID, opts.Name = init.PID, restored
			}
			ports, err := parsePorts(c.StringSlice("publish"))
			if err != nil {
				return usageError{err}
			}
			opts.Publish = ports
			comp, err := compression(c.String("compress"), opts.Output)
			if err != nil {
				return usageError{err}
			}
			opts.Compression = comp
			if err := opts.Validate(); err != nil {
				return usageError{err}
			}
			bar := newBar(terminal(c.App.ErrWriter), "writing "+filepath.Base(opts.Output))
			opts.Progress = bar.callback()
			res, err := dump.Run(c.Context, opts)
			bar.Done()
			if err != nil {
				return err
			}
			if restored != "" && !opts.LeaveRunning {
				if err := containers.Remove(c.Context, restored, containers.RemoveOptions{Force: true, Logf: opts.Logf}); err != nil {
					return fmt.Errorf("archive %s is complete, but: %w", opts.Output, err)
				}
			}
			if c.Bool("print-stats") {
				w := c.App.Writer
				if opts.Output == "-" {
					w = c.App.ErrWriter
				}
				if err := printDumpStats(w, res); err != nil {
					return err
				}
			}
			s := res.Metadata.Stats
			where := res.Path
			if where == "-" {
				where = "stdout"
			}
			fmt.Fprintf(c.App.ErrWriter, "crtool: checkpointed %s (pid %d) into %s (%s, %s): freezing %s, frozen %s, CRIU %s, archive %s, total %s\n",
				res.Metadata.Container.Name, res.Metadata.Container.PID, where, comp, archiveSize(res.Size),
				us(s.FreezingTime), us(s.FrozenTime), us(s.CRIUTime), us(s.WriteTime), us(s.TotalTime))
			return nil
		},
	})
}

// restoredName is the container crtool restored that the dump names: the
// NAME argument, or --name without --pid when crtool restored a container
// of that name; "" for a dump by --pid.
func restoredName(c *cli.Context) (string, error) {
	if err := flagsFirst(c, "dump [flags] NAME"); err != nil {
		return "", err
	}
	switch {
	case c.NArg() > 1:
		return "", usageError{fmt.Errorf("dump takes one container name (got %d arguments): crtool dump -f ARCHIVE NAME", c.NArg())}
	case c.NArg() == 1 && c.IsSet("pid"):
		return "", usageError{errors.New("NAME and --pid cannot be combined: give one of them")}
	case c.NArg() == 1:
		return c.Args().First(), nil
	case !c.IsSet("pid") && c.String("name") != "" && containers.Exists(c.String("name")):
		return c.String("name"), nil
	}
	return "", nil
}

// parsePorts reads --publish values.
func parsePorts(specs []string) ([]format.PortMapping, error) {
	var out []format.PortMapping
	for _, s := range specs {
		m, err := format.ParsePortMapping(s)
		if err != nil {
			return nil, fmt.Errorf("--publish: %w", err)
		}
		out = append(out, m)
	}
	return out, nil
}

// compression picks the archive compression from the flag or the file name.
func compression(flag, output string) (archive.Compression, error) {
	if flag != "" {
		return archive.ParseCompression(flag)
	}
	if c, ok := archive.CompressionFromName(output); ok {
		return c, nil
	}
	return archive.Gzip, nil
}

func us(v int64) string {
	return (time.Duration(v) * time.Microsecond).Round(10 * time.Microsecond).String()
}

// archiveSize is the archive's size, or "streamed" when it went to stdout.
func archiveSize(n int64) string {
	if n <= 0 {
		return "streamed"
	}
	return units.Bytes(n)
}
