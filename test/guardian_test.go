package test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/testutil"
)

// journalDir is where crtool journals what it changed (internal/guardian).
const journalDir = "/run/crtool/journal"

// stopped is a crtool run held at a testpoint (CRTOOL_TESTPOINT), ready
// to be killed there.
type stopped struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed when crtool and its stderr are done
}

// runUntil starts crtool with args and waits until it reaches point.
func runUntil(t *testing.T, point string, args ...string) *stopped {
	t.Helper()
	cmd := exec.Command(env.crtool, args...)
	cmd.Env = append(os.Environ(), "CRTOOL_TESTPOINT="+point)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	s := &stopped{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	reached := make(chan struct{})
	go func() {
		// The guardian inherits crtool's stderr: this ends when both did.
		sc := bufio.NewScanner(r)
		once := false
		for sc.Scan() {
			_, _ = s.stderr.Write([]byte(sc.Text() + "\n"))
			if !once && strings.Contains(sc.Text(), "testpoint "+point+" reached") {
				once = true
				close(reached)
			}
		}
		r.Close()
		close(s.done)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	select {
	case <-reached:
	case <-s.done:
		_ = cmd.Wait()
		t.Fatalf("crtool %v ended before testpoint %s:\n%s", args, point, s.stderr.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("crtool %v did not reach testpoint %s:\n%s", args, point, s.stderr.String())
	}
	return s
}

// kill SIGKILLs crtool alone (CRIU dies with it; its guardian must not).
func (s *stopped) kill(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = s.cmd.Wait()
}

// children lists crtool's child processes with their command lines.
func (s *stopped) children() map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if len(f) < 2 || f[1] != strconv.Itoa(s.cmd.Process.Pid) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out[pid] = string(cmdline)
	}
	return out
}

// guardianPID finds the guardian crtool started: its child in a session of
// its own, running the hidden guardian command.
func (s *stopped) guardianPID(t *testing.T) int {
	t.Helper()
	for pid, cmdline := range s.children() {
		if strings.Contains(cmdline, "__guardian") {
			return pid
		}
	}
	t.Fatalf("no guardian among the children of crtool pid %d", s.cmd.Process.Pid)
	return 0
}

// killCRIU SIGKILLs crtool's CRIU child, as an OOM kill of both would.
func (s *stopped) killCRIU(t *testing.T) {
	t.Helper()
	for pid, cmdline := range s.children() {
		if strings.HasPrefix(cmdline, "criu") || strings.Contains(cmdline, "swrk") {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no CRIU among the children of crtool pid %d: %v", s.cmd.Process.Pid, s.children())
}

// journals lists crtool's journals that mention subject.
func journals(t *testing.T, subject string) []string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(journalDir, "*.json"))
	var out []string
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), subject) {
			out = append(out, p)
		}
	}
	return out
}

// assertOnlyLogs fails if the work directory holds anything but CRIU logs.
func assertOnlyLogs(t *testing.T, work string) {
	t.Helper()
	_ = filepath.WalkDir(work, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && !strings.HasSuffix(p, ".log") {
			t.Errorf("left in the work directory: %s", p)
		}
		return nil
	})
	if out, _ := exec.Command("grep", "-c", work, "/proc/self/mountinfo").Output(); strings.TrimSpace(string(out)) != "0" {
		t.Errorf("mounts left below %s", work)
	}
}

// TestDumpKilled kills crtool with SIGKILL at each step of a dump: its
// guardian must thaw the container within 2 s and leave no archive,
// temporary archive, staged images or journal.
func TestDumpKilled(t *testing.T) {
	for _, name := range []string{"dump-prepared", "dump-frozen", "dump-criu", "dump-criu+criu", "dump-writing", "dump-written"} {
		point, withCRIU := strings.CutSuffix(name, "+criu")
		t.Run(name, func(t *testing.T) {
			c := newCounter(t)
			work := t.TempDir()
			archive := filepath.Join(c.dir, "out.tar.gz")
			s := runUntil(t, point, "dump", "--pid", strconv.Itoa(c.pid), "-f", archive, "--work-dir", work, "--runtime-root", c.runcRoot)
			// While CRIU holds the tasks (ptrace) it thaws the cgroup.
			if (point == "dump-frozen" || point == "dump-writing" || point == "dump-written") && c.freezerState() != "FROZEN" {
				t.Fatalf("at %s the container is %s, want FROZEN", point, c.freezerState())
			}
			if withCRIU {
				s.killCRIU(t)
			}
			s.kill(t)
			killed := time.Now()
			waitFor(t, 2*time.Second, "the guardian to thaw the container", func() bool { return c.freezerState() == "THAWED" })
			t.Logf("thawed %v after the kill", time.Since(killed).Round(time.Millisecond))
			<-s.done
			t.Logf("crtool and guardian:\n%s", s.stderr.String())
			assertUnharmed(t, c, archive)
			assertOnlyLogs(t, work)
			if j := journals(t, c.freezerDir()); len(j) > 0 {
				t.Fatalf("journal left after the guardian's undo: %v", j)
			}
			// Nothing blocks the next dump: the lock went with the guardian.
			c.dump("--leave-running")
		})
	}
}

// TestDumpKilledWithEstablishedTCP: a peer's busy connection survives a
// dump killed while CRIU holds the container, and a retried dump and
// restore carry it on with no reset and no lost byte.
func TestDumpKilledWithEstablishedTCP(t *testing.T) {
	_, c, client := echoSetup(t, "tcp4")
	work := t.TempDir()
	archive := filepath.Join(c.dir, "out.tar.gz")
	s := runUntil(t, "dump-criu", "dump", "--pid", strconv.Itoa(c.pid), "-f", archive, "--work-dir", work, "--runtime-root", c.runcRoot, "--tcp-established")
	_, before, _ := client.state()
	s.kill(t)
	<-s.done
	t.Logf("crtool and guardian:\n%s", s.stderr.String())
	client.waitEchoed(t, before+50, 10*time.Second) // unlocked and thawed
	assertOnlyLogs(t, work)
	out, _ := exec.Command("ip", "netns", "exec", c.netnsName, "nft", "list", "tables").CombinedOutput()
	if strings.Contains(string(out), "crtool-lock") || strings.Contains(string(out), "CRIU") {
		t.Fatalf("a network lock stayed after the guardian's undo: %s", out)
	}
	_, before, _ = client.state()
	archive = c.dump("--tcp-established")
	c.restore(archive, "--tcp-established")
	client.waitEchoed(t, before+100, 30*time.Second)
	sent, echoed, err := client.state()
	if err != nil || echoed > sent {
		t.Fatalf("after the retried dump: sent %d, echoed %d, err %v", sent, echoed, err)
	}
}

// TestRestoreKilled kills crtool at each step of a restore: the guardian
// removes what the restore created (the restored tree included) and keeps
// only CRIU's log; a later restore then succeeds.
func TestRestoreKilled(t *testing.T) {
	for _, point := range []string{"restore-unpacked", "restore-criu", "restore-restored"} {
		t.Run(point, func(t *testing.T) {
			c := newCounter(t)
			before := c.ask()
			orig := c.pid
			archive := c.dump()
			waitFor(t, 5*time.Second, "the dumped container to be gone", func() bool { return testutil.Exited(orig) && len(c.pids()) == 0 })
			cgBefore := existing(c.cgroupDirs())
			work := t.TempDir()
			s := runUntil(t, point, "restore", "-f", archive, "--work-dir", work, "--allow-host-path", c.dir)
			s.kill(t)
			waitFor(t, 2*time.Second, "the guardian to remove the half-restored tree", func() bool { return len(c.pids()) == 0 })
			<-s.done
			t.Logf("crtool and guardian:\n%s", s.stderr.String())
			if got := existing(c.cgroupDirs()); got != cgBefore {
				t.Fatalf("cgroups after the guardian's undo: %s, before the restore: %s", got, cgBefore)
			}
			assertOnlyLogs(t, work)
			abs, _ := filepath.Abs(archive)
			if j := journals(t, abs); len(j) > 0 {
				t.Fatalf("journal left after the guardian's undo: %v", j)
			}
			c.restore(archive)
			if after := c.ask(); after < before {
				t.Fatalf("counter after the retried restore = %d, before the dump %d", after, before)
			}
		})
	}
}

// existing lists which of dirs exist, for comparison.
func existing(dirs []string) string {
	var out []string
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	return strings.Join(out, " ")
}

// TestRecoverAfterGuardianKilled kills crtool together with its guardian
// while the container is frozen: crtool check reports the leftover and
// crtool recover thaws the container and removes the staged images.
func TestRecoverAfterGuardianKilled(t *testing.T) {
	c := newCounter(t)
	work := t.TempDir()
	archive := filepath.Join(c.dir, "out.tar.gz")
	s := runUntil(t, "dump-frozen", "dump", "--pid", strconv.Itoa(c.pid), "-f", archive, "--work-dir", work, "--runtime-root", c.runcRoot)
	g := s.guardianPID(t)
	if err := syscall.Kill(g, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the guardian to die", func() bool { return testutil.Exited(g) })
	s.kill(t)
	<-s.done
	time.Sleep(500 * time.Millisecond)
	if st := c.freezerState(); st != "FROZEN" {
		t.Fatalf("with the guardian killed too the container is %s: what thawed it?", st)
	}
	r := crtool(t, "check", "-v")
	if !strings.Contains(r.stdout, "interrupted run") || !strings.Contains(r.stdout, c.freezerDir()) {
		t.Fatalf("crtool check does not report the leftover:\n%s", r)
	}
	if r := crtool(t, "recover"); r.code != 0 || !strings.Contains(r.stderr, "undid dump of "+c.freezerDir()) {
		t.Fatalf("crtool recover: %s", r)
	}
	assertUnharmed(t, c, archive)
	assertOnlyLogs(t, work)
	if j := journals(t, c.freezerDir()); len(j) > 0 {
		t.Fatalf("journal left after recover: %v", j)
	}
}

// TestConcurrentDumps: while one crtool dumps a container, a second one
// is refused with a clear error and changes nothing.
func TestConcurrentDumps(t *testing.T) {
	c := newCounter(t)
	first := filepath.Join(c.dir, "first.tar.gz")
	s := runUntil(t, "dump-frozen", "dump", "--pid", strconv.Itoa(c.pid), "-f", first, "--runtime-root", c.runcRoot)
	second := filepath.Join(c.dir, "second.tar.gz")
	r := crtool(t, "dump", "--pid", strconv.Itoa(c.pid), "-f", second, "--runtime-root", c.runcRoot)
	if r.code != 1 || !strings.Contains(r.stderr, "by another crtool") {
		t.Fatalf("second dump: %s, want exit 1 naming the other crtool", r)
	}
	if _, err := os.Stat(second); err == nil {
		t.Fatal("the refused dump wrote an archive")
	}
	if st := c.freezerState(); st != "FROZEN" {
		t.Fatalf("the refused dump changed the freezer to %s", st)
	}
	s.kill(t)
	<-s.done
	assertUnharmed(t, c, first)
}

// TestUndoFailureWarns: a rollback step that fails is printed as a
// warning even without -v, next to the dump's own error.
func TestUndoFailureWarns(t *testing.T) {
	c := newCounter(t)
	work := t.TempDir()
	// The fake CRIU leaves an image nobody may remove (immutable), then
	// fails: removing the staged images is the step that fails.
	fake := writeScript(t, t.TempDir(), "criu", `case "$1" in
--version) echo "Version: 4.2.1" ;;
check) echo "Looks good." ;;
*) for d in `+work+`/crtool-dump-*/checkpoint; do echo x > "$d/pages-1.img"; chattr +i "$d/pages-1.img"; done
   echo "fake criu: refusing to dump" >&2; exit 1 ;;
esac
`)
	t.Cleanup(func() {
		imgs, _ := filepath.Glob(filepath.Join(work, "crtool-dump-*/checkpoint/pages-1.img"))
		for _, p := range imgs {
			_ = exec.Command("chattr", "-i", p).Run()
		}
	})
	archive := filepath.Join(c.dir, "out.tar.gz")
	r := crtool(t, "dump", "--pid", strconv.Itoa(c.pid), "-f", archive, "--work-dir", work, "--criu", fake, "--runtime-root", c.runcRoot)
	if r.code != 1 || !strings.Contains(r.stderr, "fake criu: refusing to dump") {
		t.Fatalf("dump: %s, want exit 1 quoting CRIU", r)
	}
	if !strings.Contains(r.stderr, "crtool: warning: undo remove work directory") || !strings.Contains(r.stderr, "operation not permitted") {
		t.Fatalf("the failed undo step is not reported as a warning:\n%s", r.stderr)
	}
	if st := c.freezerState(); st != "THAWED" {
		t.Fatalf("freezer state %s after the failed dump, want THAWED", st)
	}
}

// TestRestoreFromStdinTerminated: SIGTERM reaches a restore blocked reading
// an archive from stdin at once, not when the next byte arrives; it exits
// 143 and leaves nothing behind.
func TestRestoreFromStdinTerminated(t *testing.T) {
	requireEnv(t)
	work := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cmd := exec.Command(env.crtool, "restore", "-f", "-", "--work-dir", work)
	cmd.Stdin = r
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	// A few bytes of gzip, then silence: crtool waits in a read.
	if _, err := w.Write([]byte{0x1f, 0x8b, 0x08, 0x00}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 143 {
			t.Fatalf("restore after SIGTERM: %v, want exit 143 (128 + SIGTERM)", err)
		}
	case <-time.After(3 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("SIGTERM did not end a restore blocked on stdin within 3 s")
	}
	assertOnlyLogs(t, work)
}
