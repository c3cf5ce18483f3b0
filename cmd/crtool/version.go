package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/crtool/crtool/internal/criu"
)

func versionCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:      "version",
		Usage:     "print crtool's version and the CRIU it uses",
		ArgsUsage: " ",
		Flags:     []cli.Flag{criuFlag},
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "crtool %s\n", version)
			b, err := criu.Open(c.Context, c.String("criu"))
			if b == nil {
				// crtool's own version is printed; the missing CRIU is the
				// error.
				return err
			}
			fmt.Fprintf(c.App.Writer, "CRIU %s (%s, from %s)\n", b.Version, b.Path, b.Source)
			return err
		},
	})
}
