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
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/crtool/crtool/dump"
	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/guardian"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, decided here only, from the error's class (internal/errdefs).
const (
	exitOK         = 0
	exitFailed     = 1   // the operation failed; the archive or host stands in the way
	exitUsage      = 2   // bad flags or arguments
	exitMissing    = 3   // a prerequisite is missing: root, CRIU
	exitCanceled   = 130 // interrupted by SIGINT; nothing was changed
	exitTerminated = 143 // interrupted by SIGTERM; nothing was changed
)

// usageError marks errors in how crtool was called.
type usageError struct{ error }

func main() {
	if len(os.Args) > 1 && os.Args[1] == guardian.Command {
		os.Exit(guardian.Main(os.Args[2:]))
	}
	if exe, err := os.Executable(); err == nil {
		guardian.Exe = exe
	}
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// interrupted is the cause of the context's cancellation on a signal.
type interrupted struct{ sig os.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

func run(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if s, ok := <-sigs; ok {
			cancel(interrupted{s})
		}
	}()
	dump.Version = version
	app := newApp(stdout, stderr)
	if err := app.RunContext(ctx, args); err != nil {
		// An error of several blockers comes as one line each.
		for _, line := range strings.Split(errdefs.Render(err, flagName), "\n") {
			fmt.Fprintf(stderr, "crtool: error: %s\n", escapeControl(line))
		}
		return exitCode(ctx, err)
	}
	return exitOK
}

func exitCode(ctx context.Context, err error) int {
	var ue usageError
	var ce cli.ExitCoder
	switch {
	case errors.As(err, &ue), errors.Is(err, errdefs.ErrUsage):
		return exitUsage
	case errors.As(err, &ce):
		return ce.ExitCode()
	case errors.Is(err, errdefs.ErrPrecondition),
		errors.Is(err, criu.ErrNotRoot), errors.Is(err, criu.ErrNotFound), errors.Is(err, criu.ErrTooOld):
		return exitMissing
	case ctx.Err() != nil:
		// Whatever failed after a signal failed because of it. 128 + the
		// signal, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM.
		var i interrupted
		if errors.As(context.Cause(ctx), &i) && i.sig == syscall.SIGTERM {
			return exitTerminated
		}
		return exitCanceled
	}
	return exitFailed
}

// escapeControl makes a message safe for a terminal: errors and warnings
// quote names, paths and CRIU log lines an archive chose, and a control
// character or invalid UTF-8 among them could drive the terminal or forge
// lines. Newlines and tabs crtool put there itself stay (CRIU's quoted log
// lines come one per line, the archive's own strings are quoted with %q).
func escapeControl(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || (!unicode.IsPrint(r) && r != ' ' && r != '\n' && r != '\t') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, w := 0, 0; i < len(s); i += w {
		r, n := utf8.DecodeRuneInString(s[i:])
		w = n
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case !unicode.IsPrint(r) && r != ' ' && r != '\n' && r != '\t':
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// flagName is the command-line flag for an Options field that an error
// names (errdefs.Hint): "CreateBridge" becomes "--create-bridge".
func flagName(field string) string {
	var b strings.Builder
	rs := []rune(field)
	for i, r := range rs {
		upper := unicode.IsUpper(r)
		if upper && i > 0 {
			prevLower := unicode.IsLower(rs[i-1])
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if prevLower || (unicode.IsUpper(rs[i-1]) && nextLower) {
				b.WriteByte('-')
			}
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return "--" + b.String()
}

// informer prints a line the user must see, prefixed "crtool: ".
func informer(c *cli.Context) func(string, ...any) {
	w := c.App.ErrWriter
	return func(format string, args ...any) {
		fmt.Fprintf(w, "crtool: "+format+"\n", args...)
	}
}

// warner prints what the user must see even without -v: a rollback step
// that failed, a piece left on the host.
func warner(c *cli.Context) func(string, ...any) {
	w := c.App.ErrWriter
	return func(format string, args ...any) {
		fmt.Fprintf(w, "crtool: warning: %s\n", escapeControl(fmt.Sprintf(format, args...)))
	}
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
prerequisite is missing (root, CRIU 4.2 or newer), 130/143 interrupted (SIGINT/SIGTERM).`,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			checkCommand(),
			dumpCommand(),
			restoreCommand(),
			psCommand(),
			rmCommand(),
			inspectCommand(),
			imageCommand(),
			recoverCommand(),
			completionCommand(),
			versionCommand(),
			manCommand(),
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
		fmt.Fprintf(w, "crtool: %s\n", escapeControl(fmt.Sprintf(format, args...)))
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

// flagsFirst refuses a flag after a command's arguments, which urfave/cli
// would take for one more argument: flags come first, as with podman.
func flagsFirst(c *cli.Context, usage string) error {
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "-") && a != "-" {
			return usageError{fmt.Errorf("flag %s after the arguments: flags go first (crtool %s)", a, usage)}
		}
	}
	return nil
}

// terminal returns w when it is a file (a terminal, perhaps) for progress
// bars; the progress package draws only on terminals.
func terminal(w io.Writer) *os.File {
	f, _ := w.(*os.File)
	return f
}
