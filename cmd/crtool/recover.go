package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/crtool/crtool/internal/guardian"
)

func recoverCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "recover",
		Usage: "undo what interrupted dumps and restores left on this host",
		Description: `A dump or restore journals each change it makes to the host under
/run/crtool/journal; its guardian undoes them if crtool dies. When the
guardian died too (killed with crtool, or the host went down while a
container was frozen), the journal stays: crtool check reports it, and
recover carries it out, newest change first: it thaws containers, removes
network locks, staged images, temporary archives, and what a half-done
restore created. Runs that are still alive are left alone.`,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("recover takes no arguments (got %q)", c.Args().First())}
			}
			done, failed, err := guardian.Recover(warner(c))
			if err != nil {
				return err
			}
			for _, s := range done {
				fmt.Fprintf(c.App.ErrWriter, "crtool: undid %s\n", s.Describe())
			}
			if len(done) == 0 {
				fmt.Fprintln(c.App.ErrWriter, "crtool: nothing to recover")
			}
			if failed > 0 {
				return fmt.Errorf("%d step(s) could not be undone (see the warnings above): fix their cause and run crtool recover again", failed)
			}
			return nil
		},
	})
}
