package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/testutil"
)

// counterScript keeps a counter only in the shell's memory and reports it
// in /tmp/answer when /tmp/ask appears.
const counterScript = `i=0; while :; do i=$((i+1)); if [ -e /tmp/ask ]; then rm -f /tmp/ask; echo $i > /tmp/answer.tmp; mv /tmp/answer.tmp /tmp/answer; fi; usleep 10000; done`

// ask asks the counter container for its current value.
func (c *container) ask() int {
	c.t.Helper()
	answer := filepath.Join(c.rootfs, "tmp/answer")
	_ = os.Remove(answer)
	if err := os.WriteFile(filepath.Join(c.rootfs, "tmp/ask"), nil, 0o644); err != nil {
		c.t.Fatal(err)
	}
	var n int
	waitFor(c.t, 10*time.Second, "the counter to answer", func() bool {
		b, err := os.ReadFile(answer)
		if err != nil {
			return false
		}
		n, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	_ = os.Remove(answer)
	return n
}

// waitCount waits until the counter has passed n.
func (c *container) waitCount(n int) int {
	c.t.Helper()
	var v int
	waitFor(c.t, 20*time.Second, "the counter to pass "+strconv.Itoa(n), func() bool {
		v = c.ask()
		return v > n
	})
	return v
}

func TestCounterResumesAfterRestore(t *testing.T) {
	c := startContainer(t, containerSpec{args: []string{"/bin/sh", "-c", counterScript}})
	before := c.waitCount(50)
	origPid := c.pid

	archive := c.dump()
	st, err := os.Stat(archive)
	if err != nil {
		t.Fatalf("archive: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600", st.Mode().Perm())
	}
	waitFor(t, 5*time.Second, "the dumped container to be gone", func() bool { return testutil.Exited(origPid) && len(c.pids()) == 0 })

	pid := c.restore(archive)
	if pid == origPid {
		t.Logf("restored under the same PID %d", pid)
	}
	after := c.ask()
	if after < before {
		t.Fatalf("counter after restore = %d, before dump = %d: it started over", after, before)
	}
	if again := c.waitCount(after); again <= after {
		t.Fatalf("counter does not advance after restore: %d then %d", after, again)
	}
	if st := c.freezerState(); st != "THAWED" {
		t.Fatalf("freezer state after restore = %s, want THAWED", st)
	}
}

func TestHttpdServesAfterRestore(t *testing.T) {
	// The page is written at run time into a tmpfs, so it exists only in the
	// container's memory and CRIU's images.
	c := startContainer(t, containerSpec{
		args:  []string{"/bin/sh", "-c", `echo "written at runtime $$ $RANDOM" > /run/rt.html && cp /www/index.html /run/ && exec httpd -f -p 8080 -h /run`},
		tmpfs: []string{"/run"},
	})
	url := "http://127.0.0.1:8080/"
	var page string
	waitFor(t, 10*time.Second, "httpd to serve", func() bool {
		var err error
		page, err = httpGet(c.netnsPath, url+"rt.html")
		return err == nil
	})
	index, err := httpGet(c.netnsPath, url)
	if err != nil {
		t.Fatal(err)
	}
	archive := c.dump()
	if _, err := httpGet(c.netnsPath, url); err == nil {
		t.Fatal("httpd still answers after the dump")
	}
	c.restore(archive)
	got, err := httpGet(c.netnsPath, url+"rt.html")
	if err != nil {
		t.Fatalf("after restore: %v", err)
	}
	if got != page {
		t.Fatalf("runtime page after restore = %q, want %q", got, page)
	}
	if got, err := httpGet(c.netnsPath, url); err != nil || got != index {
		t.Fatalf("index after restore = %q, %v; want %q", got, err, index)
	}
}

func TestLeaveRunning(t *testing.T) {
	c := startContainer(t, containerSpec{args: []string{"/bin/sh", "-c", counterScript}})
	c.waitCount(20)
	atDump := c.ask()
	archive := c.dump("--leave-running")
	if testutil.Exited(c.pid) {
		t.Fatal("the original stopped despite --leave-running")
	}
	if st := c.freezerState(); st != "THAWED" {
		t.Fatalf("freezer state after --leave-running dump = %s, want THAWED", st)
	}
	// The original keeps counting; stop it well past the dumped value.
	last := c.waitCount(atDump + 100)
	c.killAll()

	c.restore(archive)
	restored := c.ask()
	if restored < atDump || restored >= last {
		t.Fatalf("restored counter = %d, want it to continue from the dump (%d), below the original's last value (%d)", restored, atDump, last)
	}
}

func TestMultiProcessWithPipe(t *testing.T) {
	// A producer and a consumer joined by a pipe, under a parent shell; the
	// producer's counter lives only in its memory, and its output also
	// goes to the supervisor's pipe (the test's).
	script := `(i=0; while :; do i=$((i+1)); echo $i; usleep 10000; done) | (while read n; do echo $n > /tmp/last.tmp; mv /tmp/last.tmp /tmp/last; [ $((n % 50)) = 0 ] && echo "tick $n"; done)`
	c := startContainer(t, containerSpec{args: []string{"/bin/sh", "-c", script}, stdio: "pipe"})
	last := func() int {
		b, err := os.ReadFile(filepath.Join(c.rootfs, "tmp/last"))
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	waitFor(t, 10*time.Second, "the pipeline to run", func() bool { return last() > 60 })
	if !strings.Contains(c.stdout.String(), "tick 50") {
		t.Fatalf("supervisor pipe got %q, want a tick", c.stdout.String())
	}
	nprocs := len(c.pids())
	if nprocs < 3 {
		t.Fatalf("container has %d processes, want at least 3", nprocs)
	}
	logFile := filepath.Join(c.dir, "restored.log")
	archive := c.dump()
	atDump := last()
	waitFor(t, 5*time.Second, "the processes to be gone", func() bool { return len(c.pids()) == 0 })

	c.restore(archive, "--log", logFile)
	waitFor(t, 10*time.Second, "the pipeline to continue", func() bool { return last() > atDump+60 })
	if got := len(c.pids()); got < 3 {
		t.Fatalf("restored container has %d processes, want at least 3", got)
	}
	// The producer continued from its counter: the numbers after the restore
	// follow the ones before it, not a new start from 1.
	waitFor(t, 10*time.Second, "a tick in --log", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "tick")
	})
	b, _ := os.ReadFile(logFile)
	first := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	if len(first) != 2 {
		t.Fatalf("--log content %q", b)
	}
	if n, _ := strconv.Atoi(first[1]); n <= atDump-50 {
		t.Fatalf("first tick after restore is %d, the producer was at %d at the dump: it started over", n, atDump)
	}
}
