// Command crtool-bench measures crtool against runc checkpoint + tar and
// Podman on the same workload; `make bench` runs it. See package bench.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/crtool/crtool/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses the flags into bench.Options and runs the benchmark. Exit
// codes: 0 done, 1 a measurement or the run failed, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	opts := bench.DefaultOptions()
	opts.Out, opts.Log = stdout, stderr
	fs := flag.NewFlagSet("crtool-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizes := fs.String("sizes", "64,512,2048", "workload sizes in MiB, comma-separated")
	tools := fs.String("tools", strings.Join(bench.AllTools, ","), "tools to measure: crtool, runc+tar, podman")
	fs.IntVar(&opts.Runs, "runs", opts.Runs, "repetitions per size and tool; medians are reported")
	fs.StringVar(&opts.Small, "small", "", `"httpd": add a busybox httpd container as the small case of the targets`)
	fs.StringVar(&opts.Crtool, "crtool", opts.Crtool, "crtool binary")
	fs.StringVar(&opts.CRIU, "criu", opts.CRIU, "CRIU binary, for runc and crtool")
	fs.StringVar(&opts.Runc, "runc", opts.Runc, "runc binary")
	fs.StringVar(&opts.Podman, "podman", "", "podman binary (default: from PATH; missing skips Podman)")
	fs.StringVar(&opts.PodmanConf, "podman-conf", opts.PodmanConf, "CONTAINERS_CONF for podman (written by scripts/deps.sh podman)")
	fs.StringVar(&opts.WorkDir, "workdir", "", "directory on disk in which the run makes (and at the end removes) its own directory (default: /var/tmp)")
	fs.StringVar(&opts.JSON, "json", "", "also write every measurement and the medians to this file")
	fs.BoolVar(&opts.Limits, "limits", opts.Limits, "measure the machine's disk and compression limits")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: crtool-bench [options]\n\nMeasures crtool dump/restore against runc checkpoint + tar and Podman, interleaved, as root.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "crtool-bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var err error
	if opts.Sizes, err = bench.ParseSizes(*sizes); err != nil {
		fmt.Fprintf(stderr, "crtool-bench: -sizes: %v\n", err)
		return 2
	}
	opts.Tools = bench.ParseTools(*tools)
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "crtool-bench: %v\n", err)
		return 2
	}

	// The first Ctrl-C cancels the run, which then removes what it
	// created; a second one kills the benchmark as usual.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		signal.Stop(sigs)
		fmt.Fprintf(stderr, "crtool-bench: %v: cleaning up (again to abandon the cleanup)\n", sig)
		cancel()
	}()
	if _, err := bench.Run(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "crtool-bench: %v\n", err)
		return 1
	}
	return 0
}
