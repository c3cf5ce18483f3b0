package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/crtool/crtool/containers"
	"github.com/crtool/crtool/internal/errdefs"
)

func rmCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:      "rm",
		Usage:     "stop a restored container and remove what its restore created",
		ArgsUsage: "NAME...",
		Description: `Removes each named container crtool restored, and every piece its
restore created on the host: its processes, the overlay and other mounts,
the state directory under /var/lib/crtool/containers, the network
namespace, the host ends of its veth pairs, the bridge when crtool created
it and nothing else is attached to it, nftables tables and the cgroups
(parents that the restore created too, unless another container uses
them). Pieces that were there before the restore (a --netns namespace, a
bridge of the host's, --root) stay.

A running container is refused without -f; with -f its init gets SIGTERM
and, after -t seconds, every process of the container SIGKILL. A piece
already gone is fine; a piece that cannot be removed is named, the record
stays, and crtool rm NAME tries again.

Example:
   crtool rm -f web`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "stop a running container first"},
			&cli.UintFlag{Name: "time", Aliases: []string{"t"}, Value: 10, Usage: "seconds to wait after SIGTERM before SIGKILL"},
			verboseFlag,
		},
		BashComplete: completeNames,
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageError{errors.New("rm needs the name of a container (crtool ps -a lists them)")}
			}
			if err := flagsFirst(c, "rm [-f] [-t SECONDS] NAME..."); err != nil {
				return err
			}
			opts := containers.RemoveOptions{
				Force:   c.Bool("force"),
				Timeout: time.Duration(c.Uint("time")) * time.Second,
				Logf:    logger(c),
			}
			var errs []error
			for _, name := range c.Args().Slice() {
				err := containers.Remove(c.Context, name, opts)
				switch {
				case err == nil:
					fmt.Fprintln(c.App.Writer, name)
				case opts.Force && errors.Is(err, errdefs.ErrNotFound):
					// -f: a container that is not there is removed.
				default:
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	})
}

// completeNames offers the names of the containers crtool restored, or
// the command's flags after a "-".
func completeNames(c *cli.Context) {
	if n := len(os.Args); n > 2 && strings.HasPrefix(os.Args[n-2], "-") {
		cli.DefaultCompleteWithFlags(c.Command)(c)
		return
	}
	entries, err := containers.List(true)
	if err != nil {
		return
	}
	for _, e := range entries {
		fmt.Fprintln(c.App.Writer, e.Name)
	}
}
