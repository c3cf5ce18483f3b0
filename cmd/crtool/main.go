// Command crtool checkpoints and restores Linux containers with CRIU.
//
// Output rules: results go to stdout (the restored PID, inspect output, an
// archive written to "-"); progress, summaries and errors go to stderr, each
// line prefixed "crtool: ".
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/crtool/crtool/criu"
	"github.com/crtool/crtool/dump"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the operation failed
	exitUsage   = 2 // bad flags or arguments
	exitMissing = 3 // a prerequisite is missing: root, CRIU
)

// usageError marks errors in how crtool was called.
type usageError struct{ error }

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dump.Version = version
	app := newApp(stdout, stderr)
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintf(stderr, "crtool: error: %v\n", err)
		return exitCode(err)
	}
	return exitOK
}

func exitCode(err error) int {
	var ue usageError
	var ce cli.ExitCoder
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ce):
		return ce.ExitCode()
	case errors.Is(err, criu.ErrNotRoot), errors.Is(err, criu.ErrNotFound), errors.Is(err, criu.ErrTooOld):
		return exitMissing
	}
	return exitFailed
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "crtool",
		Usage:   "checkpoint and restore Linux containers with CRIU",
		Version: version,
		Description: `crtool freezes a container's cgroup, has CRIU dump its processes and packs
them with the container's network and metadata into one archive in Podman's
checkpoint layout; restore brings the container back from the archive on the
same or another host.

Exit status: 0 success, 1 the operation failed, 2 bad usage, 3 a
prerequisite is missing (root, CRIU 4.2 or newer).`,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		Commands: []*cli.Command{
			checkCommand(),
			dumpCommand(),
			restoreCommand(),
			inspectCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unknown command %q (see crtool --help)", c.Args().First())}
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main decides exit codes
	}
}

// logger prints progress lines on stderr when verbose.
func logger(c *cli.Context) func(string, ...any) {
	if !c.Bool("verbose") {
		return nil
	}
	w := c.App.ErrWriter
	return func(format string, args ...any) {
		fmt.Fprintf(w, "crtool: "+format+"\n", args...)
	}
}

var verboseFlag = &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "report each step on stderr"}

var criuFlag = &cli.StringFlag{Name: "criu", Usage: "CRIU binary (default: $CRTOOL_CRIU, then " + criu.PrivatePath + ", then PATH)", EnvVars: nil}

var workDirFlag = &cli.StringFlag{Name: "work-dir", Usage: "directory for the temporary image directory and CRIU's log (default: $TMPDIR)"}

// withUsageErrors makes flag parsing errors of cmd usage errors (exit 2,
// one line) instead of urfave/cli's full help dump.
func withUsageErrors(cmd *cli.Command) *cli.Command {
	cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return usageError{fmt.Errorf("%w (see crtool %s --help)", err, cmd.Name)}
	}
	return cmd
}

// terminal returns w when it is a file (a terminal, perhaps) for progress
// bars; the progress package draws only on terminals.
func terminal(w io.Writer) *os.File {
	f, _ := w.(*os.File)
	return f
}
