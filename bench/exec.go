package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// command is one external program the benchmark runs and times.
type command struct {
	name string
	args []string
	env  []string  // added to the benchmark's environment
	dir  string    // working directory
	in   io.Reader // stdin; nil: /dev/null
	// null connects stdout and stderr to /dev/null: for runc run/restore -d,
	// whose container inherits them.
	null bool
	// hwm samples the process's own VmHWM while it runs (the rusage
	// figure also covers the children it reaped, CRIU for instance).
	hwm bool
	// launcher, if set, is the rusage helper (csrc/rusage.c) that runs
	// the command and reports its maxrss without the benchmark's own.
	launcher string
}

// stampedLine is a line of stderr and when it arrived, after the start.
type stampedLine struct {
	At   time.Duration
	Text string
}

// cmdResult is what a finished command left behind.
type cmdResult struct {
	wall time.Duration
	// maxRSS is ru_maxrss (KiB) of wait4: the largest of the process and
	// the descendants it reaped. Without a launcher it is at least the
	// benchmark's own peak, which exec carries over into the child.
	maxRSS int64
	hwm    int64 // KiB: the process's own peak, sampled (0 unless command.hwm)
	stdout string
	stderr []stampedLine
}

func (r *cmdResult) stderrText() string {
	var b strings.Builder
	for _, l := range r.stderr {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// drainGrace is how long output is still read after the process exited: a
// detached descendant that kept the pipe open must not hang the benchmark.
const drainGrace = 2 * time.Second

// run starts c, waits for it and times it. The wall time runs from just
// before the start to the process's exit. Ctrl-C (ctx) reaches the process
// as SIGINT, so crtool can roll back, and SIGKILL 30 s later.
func run(ctx context.Context, c command) (*cmdResult, error) {
	name, args := c.name, c.args
	if c.launcher != "" {
		name, args = c.launcher, append([]string{c.name}, c.args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Dir = c.dir
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	if c.in != nil {
		cmd.Stdin = c.in
	}
	res := &cmdResult{}
	var rusR *os.File
	if c.launcher != "" {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		rusR = r
		defer rusR.Close()
		cmd.ExtraFiles = []*os.File{w} // fd 3
		defer w.Close()
	}
	var outR, errR *os.File
	var drained sync.WaitGroup
	var outBuf bytes.Buffer
	if !c.null {
		// Own pipes instead of exec's: Wait would wait for every holder
		// of the write end, a detached container included.
		var outW, errW *os.File
		var err error
		if outR, outW, err = os.Pipe(); err != nil {
			return nil, err
		}
		if errR, errW, err = os.Pipe(); err != nil {
			outR.Close()
			outW.Close()
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = outW, errW
		defer outW.Close()
		defer errW.Close()
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		if outR != nil {
			outR.Close()
			errR.Close()
		}
		return nil, fmt.Errorf("start %s: %w", c.name, err)
	}
	if c.launcher != "" {
		cmd.ExtraFiles[0].Close()
	}
	if !c.null {
		cmd.Stdout.(*os.File).Close()
		cmd.Stderr.(*os.File).Close()
		drained.Add(2)
		go func() {
			defer drained.Done()
			_, _ = io.Copy(&outBuf, outR)
		}()
		go func() {
			defer drained.Done()
			sc := bufio.NewScanner(errR)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				res.stderr = append(res.stderr, stampedLine{At: time.Since(start), Text: sc.Text()})
			}
			// After an overlong line, keep the writer from blocking.
			_, _ = io.Copy(io.Discard, errR)
		}()
	}
	stopHWM := make(chan struct{})
	hwmDone := make(chan int64, 1)
	if c.hwm {
		go sampleHWM(cmd.Process.Pid, c.launcher != "", stopHWM, hwmDone)
	} else {
		hwmDone <- 0
	}
	err := cmd.Wait()
	res.wall = time.Since(start)
	close(stopHWM)
	res.hwm = <-hwmDone
	if !c.null {
		done := make(chan struct{})
		go func() { drained.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(drainGrace):
		}
		outR.Close()
		errR.Close()
		<-done
		res.stdout = outBuf.String()
	}
	if c.launcher != "" {
		// The launcher wrote its child's figure, unless it failed.
		b, _ := io.ReadAll(rusR)
		if v, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); perr == nil {
			res.maxRSS = v
		}
	} else if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.maxRSS = ru.Maxrss
		}
	}
	if err != nil {
		return res, fmt.Errorf("%s %s: %w%s", c.name, strings.Join(c.args, " "), err, tail(res.stderrText(), 1500))
	}
	return res, nil
}

// tail formats the end of a command's error output for an error message.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return ":\n" + s
}

// sampleHWM reads /proc/PID/status's VmHWM every few milliseconds until
// stop and sends the last value seen. The kernel keeps the peak, so only
// what happens in the last interval before the exit can be missed. With
// launched, PID is the launcher and its child is sampled.
func sampleHWM(pid int, launched bool, stop <-chan struct{}, out chan<- int64) {
	var last int64
	path := ""
	if !launched {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if path == "" {
			if child := firstChild(pid); child > 0 {
				path = "/proc/" + strconv.Itoa(child) + "/status"
			}
		}
		if path != "" { // "": the launcher has not forked yet
			if v, err := readHWM(path); err == nil && v > last {
				last = v
			}
		}
		select {
		case <-stop:
			out <- last
			return
		case <-t.C:
		}
	}
}

// firstChild is the first child of pid, 0 if none.
func firstChild(pid int) int {
	p := strconv.Itoa(pid)
	b, err := os.ReadFile("/proc/" + p + "/task/" + p + "/children")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

func readHWM(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseHWM(b)
}

// parseHWM finds "VmHWM:   1234 kB" in a /proc/PID/status text.
func parseHWM(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, errors.New("no VmHWM")
}

// cleanupContext is for undoing after the run's context was cancelled.
func cleanupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}
