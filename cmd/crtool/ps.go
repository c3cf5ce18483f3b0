package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/crtool/crtool/containers"
)

func psCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:      "ps",
		Usage:     "list the containers crtool restored",
		ArgsUsage: " ",
		Description: `Lists the containers crtool restored, from the records restore writes
under /run/crtool/containers: name, status, PID of the init, uptime,
addresses, published ports and the archive each came from. A status is
running while the recorded init runs (the same PID with the same start
time: a reused PID never counts), exited once it has ended while pieces of
the container remain on the host, gone when only the record is left.
crtool rm NAME removes a container with every piece its restore created.

Example:
   crtool ps -a --format json`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "also list exited and gone containers"},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "table or json (keys documented in the README)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("ps takes no arguments (got %q)", c.Args().First())}
			}
			render := containers.RenderTable
			switch f := c.String("format"); f {
			case "table":
			case "json":
				render = containers.RenderJSON
			default:
				return usageError{fmt.Errorf("--format %s: use table or json", f)}
			}
			entries, err := containers.List(c.Bool("all"))
			if err != nil {
				return err
			}
			return render(c.App.Writer, entries)
		},
	})
}
