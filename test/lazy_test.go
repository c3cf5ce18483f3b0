package test

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lazyMiB is the memory of the post-copy tests' workload: enough that the
// transfer outlasts the restore by a good part of a second.
const lazyMiB = 384

// migration is one post-copy migration in progress: the source's
// crtool dump --lazy-pages serving, the destination's restore running.
type migration struct {
	t          *testing.T
	src, dst   *container
	archive    string
	dump       *exec.Cmd
	dumpErr    *syncBuffer
	restore    *exec.Cmd
	restoreErr *syncBuffer
	restored   chan error // the restore's exit
	dumped     chan error // the dump's exit
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 nothing listens on.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startMigration starts the source's lazy dump, waits for its archive,
// and restores it into a namespace and cgroup of its own, returning once
// the restore printed the new PID.
func startMigration(t *testing.T, src *container) *migration {
	t.Helper()
	m := &migration{t: t, src: src, dumpErr: &syncBuffer{}, restoreErr: &syncBuffer{},
		restored: make(chan error, 1), dumped: make(chan error, 1)}
	m.archive = filepath.Join(src.dir, uniqueID("lazy-")+".tar.zst")
	addr := freeLoopbackPort(t)
	m.dump = exec.Command(env.crtool, "dump", "-v", "--pid", strconv.Itoa(src.pid), "-f", m.archive,
		"--runtime-root", src.runcRoot, "--lazy-pages", "--page-server", addr, "--work-dir", src.dir)
	m.dump.Stderr = m.dumpErr
	if err := m.dump.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGTERM first: a dump killed outright leaves fs.pipe-max-size
		// raised and the source stopped.
		stopCmd(m.dump, m.dumped)
		t.Logf("crtool dump --lazy-pages:\n%s", m.dumpErr.String())
	})
	go func() { m.dumped <- m.dump.Wait() }()
	waitFor(t, 60*time.Second, "the lazy dump's archive", func() bool {
		_, err := os.Stat(m.archive)
		return err == nil
	})

	// The destination: a namespace and cgroup of its own on this host.
	m.dst = &container{t: t, id: src.id + "-dst", dir: src.dir, runcRoot: src.runcRoot, netnsName: uniqueID("crtd-")}
	m.dst.netnsPath = "/run/netns/" + m.dst.netnsName
	m.dst.cgroupPath = src.cgroupPath + "-dst"
	mustRun(t, "ip", "netns", "add", m.dst.netnsName)
	t.Cleanup(m.dst.cleanup)
	mustRun(t, "ip", "-n", m.dst.netnsName, "link", "set", "lo", "up")

	m.restore = exec.Command(env.crtool, "restore", "-v", "--lazy-pages", "-f", m.archive,
		"--netns", m.dst.netnsPath, "--cgroup", m.dst.cgroupPath, "--work-dir", src.dir,
		"--allow-host-path", src.dir)
	m.restore.Stderr = m.restoreErr
	out, err := m.restore.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.restore.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCmd(m.restore, m.restored)
		t.Logf("crtool restore --lazy-pages:\n%s", m.restoreErr.String())
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	go func() { m.restored <- m.restore.Wait() }()
	if err != nil {
		t.Fatalf("restore printed no PID: %v\n%s", err, m.restoreErr.String())
	}
	if m.dst.pid, err = strconv.Atoi(strings.TrimSpace(line)); err != nil {
		t.Fatalf("restore printed %q, want a PID", line)
	}
	return m
}

// allStopped reports whether every pid is in a stop (ptrace or job
// control): it runs no code.
func allStopped(pids []int) bool {
	for _, p := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat")
		if err != nil {
			return false
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) || (s[i+2] != 't' && s[i+2] != 'T') {
			return false
		}
	}
	return len(pids) > 0
}

func pipeMaxSize(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// stopCmd ends a crtool the test started: SIGTERM, then SIGKILL after a
// while. done yields its exit.
func stopCmd(cmd *exec.Cmd, done chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// exited waits for one of the commands' exits.
func exited(t *testing.T, ch chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		ch <- err // for the cleanup
		return err
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not finish", what)
		return nil
	}
}

// TestLazyMigration moves a workload that keeps writing its memory from
// one network namespace to another by post-copy: the destination answers
// its TCP peer before the memory has arrived, the source stays frozen
// until the last page has gone and is then gone, and the memory is intact
// after the transfer.
func TestLazyMigration(t *testing.T) {
	pipeBefore := pipeMaxSize(t)
	src := startMemcheck(t, lazyMiB)
	before := src.mustMemcheck()
	m := startMigration(t, src)
	if !strings.Contains(m.dumpErr.String(), "serving the rest of the memory") {
		t.Errorf("the dump did not say where it serves the memory:\n%s", m.dumpErr.String())
	}
	select {
	case <-m.restored:
		t.Logf("the transfer ended before the check of the source")
		m.restored <- nil
	default:
		// The dump logs "served" before it stops the source: read the
		// source first, and it must have been whole if the log did not
		// say so afterwards.
		pids := src.pids()
		st, still := src.freezerState(), allStopped(pids)
		if !strings.Contains(m.dumpErr.String(), "bytes of lazy memory") {
			// CRIU holds the seized tasks in a ptrace stop (it thaws the
			// cgroup once they are seized and refreezes it as it leaves).
			if len(pids) == 0 || (st != "FROZEN" && !still) {
				t.Fatalf("source (freezer %s, processes %v) runs or is gone while the destination still receives memory", st, pids)
			}
		} else {
			t.Logf("the transfer ended before the check of the source")
		}
	}
	if err := exited(t, m.restored, "the lazy restore"); err != nil {
		t.Fatalf("restore --lazy-pages: %v\n%s", err, m.restoreErr.String())
	}
	if !strings.Contains(m.restoreErr.String(), "all memory of") {
		t.Errorf("restore did not report the end of the transfer:\n%s", m.restoreErr.String())
	}
	if err := exited(t, m.dumped, "the lazy dump"); err != nil {
		t.Fatalf("dump --lazy-pages: %v\n%s", err, m.dumpErr.String())
	}
	waitFor(t, 5*time.Second, "the source to be gone", func() bool { return len(src.pids()) == 0 })
	after := m.dst.mustMemcheck()
	if after < before {
		t.Fatalf("memcheck counter %d after the migration, %d before: it started over", after, before)
	}
	waitFor(t, 10*time.Second, "the counter to advance", func() bool {
		n, err := m.dst.memcheck()
		return err == nil && n > after
	})
	if after := pipeMaxSize(t); after != pipeBefore {
		t.Errorf("fs.pipe-max-size is %s after the migration, %s before", after, pipeBefore)
	}
}

// TestLazyMigrationSourceKilled interrupts the source while it still
// serves memory: both sides say that the transfer broke off, and the
// source, whose memory the destination has partly taken, is stopped
// rather than thawed.
func TestLazyMigrationSourceKilled(t *testing.T) {
	src := startMemcheck(t, lazyMiB)
	m := startMigration(t, src)
	if err := m.dump.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := exited(t, m.dumped, "the interrupted dump"); err == nil {
		t.Fatalf("the interrupted dump succeeded:\n%s", m.dumpErr.String())
	}
	if err := exited(t, m.restored, "the restore"); err == nil {
		t.Logf("the transfer ended before the interruption; nothing to check")
		return
	}
	if s := m.restoreErr.String(); !strings.Contains(s, "post-copy transfer broke off") {
		t.Errorf("restore does not say the transfer broke off:\n%s", s)
	}
	if s := m.dumpErr.String(); !strings.Contains(s, "post-copy transfer failed") || !strings.Contains(s, "destination was already running") {
		t.Errorf("dump does not say the transfer failed after the destination started:\n%s", s)
	}
	waitFor(t, 5*time.Second, "the source to be stopped", func() bool { return len(src.pids()) == 0 })
}
