package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/inspect"
)

// Output formats of crtool inspect.
const (
	formatTree = "tree"
	formatJSON = "json"
)

// Color modes of crtool inspect.
const (
	colorAuto   = "auto"
	colorAlways = "always"
	colorNever  = "never"
)

func inspectCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:      "inspect",
		Usage:     "show what is inside a checkpoint archive or image directory",
		ArgsUsage: "ARCHIVE|DIR",
		Description: `Reads a checkpoint without restoring or extracting it and shows the
container, CRIU's dump statistics and sizes; with options, the process tree
and each process's command line, environment, open files, sockets and
memory mappings, the mounts and the network. ARCHIVE is a crtool, Podman or
CRI-O archive (gzip, zstd or plain tar, detected by content; "-" reads
stdin); DIR is an unpacked archive or a bare CRIU image directory. No CRIU
binary is needed.

An archive that crtool wrote is read only up to its memory pages unless
--sizes, --cmdline or --env need more; the tree then says so.

--verify reads the whole archive instead and checks every member against
the SHA-256 manifest crtool writes into its archives (restore checks it
too, before CRIU runs); archives of other engines have none.

Examples:
   crtool inspect web.tar.gz
   crtool inspect --ps-tree --files --sockets web.tar.gz
   crtool inspect --all --format json web.tar.gz | jq '.processes[].cmdline'
   crtool inspect --verify web.tar.gz`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "ps-tree", Usage: "show the process tree"},
			&cli.BoolFlag{Name: "cmdline", Usage: "show each process's command line, read from its memory (implies --ps-tree)"},
			&cli.BoolFlag{Name: "env", Usage: "show each process's environment, read from its memory (implies --ps-tree)"},
			&cli.BoolFlag{Name: "files", Usage: "show each process's open files, cwd and root (implies --ps-tree)"},
			&cli.BoolFlag{Name: "sockets", Usage: "show each process's sockets: unix, TCP with addresses and state, UDP (implies --ps-tree)"},
			&cli.BoolFlag{Name: "memory", Usage: "show each process's memory mappings and what was dumped of them (implies --ps-tree)"},
			&cli.BoolFlag{Name: "mounts", Usage: "show the mounts: the OCI spec's, CRIU's, and external ones"},
			&cli.BoolFlag{Name: "network", Usage: "show the network: interfaces, addresses, routes as recorded"},
			&cli.BoolFlag{Name: "metadata", Usage: "show the OCI spec's annotations"},
			&cli.BoolFlag{Name: "sizes", Usage: "read the whole archive for exact sizes, even where it could stop early"},
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "show everything"},
			&cli.BoolFlag{Name: "verify", Usage: "check every member of the archive against its SHA-256 manifest, and show nothing else"},
			&cli.UintFlag{Name: "pid", Usage: "show only this process (PID inside the container) and its descendants"},
			&cli.StringFlag{Name: "format", Aliases: []string{"o"}, Value: formatTree, Usage: "tree or json"},
			&cli.StringFlag{Name: "color", Value: colorAuto, Usage: "auto (on a terminal, unless NO_COLOR is set), always or never"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				if c.NArg() == 0 {
					return usageError{fmt.Errorf("inspect needs an archive or directory: crtool inspect [options] ARCHIVE|DIR")}
				}
				return usageError{fmt.Errorf("inspect takes one archive or directory (got also %q): options go before it", c.Args().Get(1))}
			}
			if c.Bool("verify") {
				st, err := inspect.Verify(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s: %d members, %d bytes, all match the manifest\n", c.Args().First(), st.Members, st.Bytes)
				return nil
			}
			format := c.String("format")
			if format != formatTree && format != formatJSON {
				return usageError{fmt.Errorf("unknown --format %q: use tree or json", format)}
			}
			color, err := useColor(c.String("color"), c.App.Writer)
			if err != nil {
				return usageError{err}
			}
			pid := c.Uint("pid")
			if uint64(pid) > math.MaxUint32 {
				return usageError{fmt.Errorf("--pid %d is not a PID", pid)}
			}
			opts := inspect.Options{
				PsTree:   c.Bool("ps-tree"),
				Cmdline:  c.Bool("cmdline"),
				Env:      c.Bool("env"),
				Files:    c.Bool("files"),
				Sockets:  c.Bool("sockets"),
				Memory:   c.Bool("memory"),
				Mounts:   c.Bool("mounts"),
				Network:  c.Bool("network"),
				Metadata: c.Bool("metadata"),
				Sizes:    c.Bool("sizes"),
				PID:      uint32(pid),
			}
			if c.Bool("all") {
				opts = inspect.All()
				opts.PID = uint32(pid)
			}
			r, err := inspect.Collect(c.Context, c.Args().First(), opts)
			if err != nil {
				return err
			}
			if format == formatJSON {
				return inspect.RenderJSON(c.App.Writer, r)
			}
			return inspect.RenderTree(c.App.Writer, r, inspect.RenderOptions{Color: color})
		},
	})
}

// useColor decides whether the tree gets colors.
func useColor(mode string, w io.Writer) (bool, error) {
	switch mode {
	case colorAlways:
		return true, nil
	case colorNever:
		return false, nil
	case colorAuto:
		if os.Getenv("NO_COLOR") != "" || strings.EqualFold(os.Getenv("TERM"), "dumb") {
			return false, nil
		}
		f, ok := w.(*os.File)
		if !ok {
			return false, nil
		}
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		return err == nil, nil
	}
	return false, fmt.Errorf("unknown --color %q: use auto, always or never", mode)
}
