package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/crtool/crtool/check"
)

func checkCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "check",
		Usage: "check that this host can checkpoint and restore containers",
		Description: `Prints the CRIU binary crtool uses and its version, CRIU's own feature
check, the cgroup layout and where the freezer is, the network-lock backend
and whether crtool runs with the privileges it needs. Exits 0 only when a
dump can work; otherwise prints one line per problem with its fix.`,
		Flags: []cli.Flag{criuFlag, verboseFlag},
		Action: func(c *cli.Context) error {
			r := check.Run(c.Context, check.Options{CRIUPath: c.String("criu")})
			w := c.App.Writer
			for _, it := range r.Items {
				fmt.Fprintf(w, "%-13s %s\n", it.Name+":", it.Value)
				if c.Bool("verbose") && it.Detail != "" {
					fmt.Fprintf(w, "%13s %s\n", "", indent(it.Detail))
				}
			}
			if r.OK() {
				fmt.Fprintln(w, "ok: this host can dump and restore containers")
				return nil
			}
			for _, it := range r.Items {
				if !it.OK {
					fmt.Fprintf(c.App.ErrWriter, "crtool: problem: %s: %s\n", it.Name, it.Fix)
				}
			}
			return cli.Exit("", exitFailed)
		},
	})
}

func indent(s string) string {
	out := ""
	for i, r := range s {
		out += string(r)
		if r == '\n' && i < len(s)-1 {
			out += "              "
		}
	}
	return out
}
