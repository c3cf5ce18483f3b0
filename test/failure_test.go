package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/testutil"
)

// writeScript writes an executable shell script.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// assertUnharmed checks that a failed dump left the container thawed and
// running, and no archive (or temporary file) in the archive's directory.
func assertUnharmed(t *testing.T, c *container, archive string) {
	t.Helper()
	if st := c.freezerState(); st != "THAWED" {
		t.Fatalf("freezer state after a failed dump = %s, want THAWED", st)
	}
	if testutil.Exited(c.pid) {
		t.Fatal("the container died in a failed dump")
	}
	v := c.ask()
	c.waitCount(v) // still counting
	if _, err := os.Stat(archive); err == nil {
		t.Fatalf("%s exists after a failed dump", archive)
	}
	entries, _ := os.ReadDir(filepath.Dir(archive))
	for _, e := range entries {
		if strings.Contains(e.Name(), filepath.Base(archive)) {
			t.Fatalf("leftover %s after a failed dump", e.Name())
		}
	}
}

func newCounter(t *testing.T) *container {
	c := startContainer(t, containerSpec{args: []string{"/bin/sh", "-c", counterScript}})
	c.waitCount(10)
	return c
}

func TestDumpFailingCriuLeavesContainerRunning(t *testing.T) {
	c := newCounter(t)
	fake := writeScript(t, t.TempDir(), "criu", `case "$1" in
--version) echo "Version: 4.2.1" ;;
check) echo "Looks good." ;;
*) echo "fake criu: refusing to dump" >&2; exit 1 ;;
esac
`)
	archive := filepath.Join(c.dir, "out.tar.gz")
	r := crtool(t, "dump", "--pid", strconv.Itoa(c.pid), "-f", archive, "--criu", fake)
	if r.code != 1 {
		t.Fatalf("dump with a failing CRIU: %s, want exit 1", r)
	}
	if !strings.Contains(r.stderr, "fake criu: refusing to dump") {
		t.Fatalf("error does not quote CRIU: %s", r.stderr)
	}
	assertUnharmed(t, c, archive)
}

// killerCriu wraps the real CRIU: it kills it with SIGKILL once the dump log
// shows that CRIU's parasite runs inside the container's process, the
// worst moment for CRIU to die.
func killerCriu(t *testing.T, workDir string) string {
	return writeScript(t, t.TempDir(), "criu", `case "$1" in
--version|check) exec "`+env.criu+`" "$@" ;;
esac
"`+env.criu+`" "$@" &
pid=$!
while kill -0 $pid 2>/dev/null; do
	if grep -qs "switched to daemon mode" "`+workDir+`"/crtool-dump-*/checkpoint/dump.log; then
		kill -9 $pid
		break
	fi
	usleep 1000 2>/dev/null || sleep 0.001
done
wait $pid
`)
}

func TestDumpCriuKilledMidDump(t *testing.T) {
	c := newCounter(t)
	work := t.TempDir()
	archive := filepath.Join(c.dir, "out.tar.gz")
	r := crtool(t, "dump", "--pid", strconv.Itoa(c.pid), "-f", archive, "--work-dir", work, "--criu", killerCriu(t, work))
	if r.code != 1 {
		t.Fatalf("dump with CRIU killed: %s, want exit 1", r)
	}
	if !strings.Contains(r.stderr, "criu dump failed") {
		t.Fatalf("error does not name CRIU's failure: %s", r.stderr)
	}
	keptLog(t, r.stderr)
	// CRIU's images and its cgroup yard mount went; only the log stays.
	if entries, _ := os.ReadDir(work); len(entries) > 0 {
		t.Errorf("failed dump left %s in its work directory", entries[0].Name())
	}
	for _, m := range mountPoints(t) {
		if strings.HasPrefix(m, work) {
			t.Errorf("failed dump left mount %s", m)
		}
	}
	assertUnharmed(t, c, archive)
}

func TestDumpInterrupted(t *testing.T) {
	c := newCounter(t)
	work := t.TempDir()
	archive := filepath.Join(c.dir, "out.tar.gz")
	cmd := exec.Command(env.crtool, "dump", "--pid", strconv.Itoa(c.pid), "-f", archive, "--work-dir", work)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Press Ctrl-C while CRIU's parasite is inside the container.
	deadline := time.Now().Add(30 * time.Second)
	for {
		logs, _ := filepath.Glob(filepath.Join(work, "crtool-dump-*/checkpoint/dump.log"))
		if len(logs) > 0 {
			if b, _ := os.ReadFile(logs[0]); bytes.Contains(b, []byte("switched to daemon mode")) {
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("CRIU never reached the parasite stage")
		}
		time.Sleep(500 * time.Microsecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	t.Logf("crtool: %v\n%s", err, stderr.String())
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("interrupted dump: %v, want exit 130 (128 + SIGINT)", err)
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("error does not say the dump was interrupted: %s", stderr.String())
	}
	assertUnharmed(t, c, archive)
}

func TestDumpBadInput(t *testing.T) {
	c := startContainer(t, containerSpec{args: []string{"/bin/sh", "-c", `(while :; do usleep 100000; done) & ` + counterScript}})
	c.waitCount(5)
	// The subshell is the one long-lived child (usleep, rm and mv come and go).
	var child int
	for _, p := range c.pids() {
		if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/comm"); p != c.pid && strings.TrimSpace(string(comm)) == "sh" {
			child = p
		}
	}
	if child == 0 {
		t.Fatal("no child process in the container")
	}
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	dead := exited.ProcessState.Pid()
	oldCriu := writeScript(t, t.TempDir(), "criu", `echo "Version: 4.1.1"`)
	archive := filepath.Join(c.dir, "x.tar.gz")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"not init", []string{"--pid", strconv.Itoa(child)}, 1, []string{"not a container's init", "init is pid " + strconv.Itoa(c.pid), "dump that one"}},
		{"no such pid", []string{"--pid", strconv.Itoa(dead)}, 1, []string{"no such process"}},
		{"missing criu", []string{"--pid", strconv.Itoa(c.pid), "--criu", "/nonexistent/criu"}, 3, []string{"criu not found", "make deps"}},
		{"old criu", []string{"--pid", strconv.Itoa(c.pid), "--criu", oldCriu}, 3, []string{"4.1.1", "4.2 or newer"}},
		{"no pid", nil, 2, []string{"--pid is required"}},
		{"bad compression", []string{"--pid", strconv.Itoa(c.pid), "--compress", "lz4"}, 2, []string{"unknown compression"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := crtool(t, append([]string{"dump", "-f", archive}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("%s, want exit %d", r, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q lacks %q", r.stderr, w)
				}
			}
			if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n > 0 {
				t.Errorf("error takes %d lines, want one: %q", n+1, r.stderr)
			}
			if _, err := os.Stat(archive); err == nil {
				t.Fatal("archive written despite the error")
			}
		})
	}
	if st := c.freezerState(); st != "THAWED" {
		t.Fatalf("freezer state = %s after refused dumps", st)
	}
}

func TestNotRoot(t *testing.T) {
	requireEnv(t)
	// The checkout may sit where nobody cannot reach (/root): run a copy.
	dir, err := os.MkdirTemp("", "crtool-notroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "crtool")
	mustRun(t, "cp", env.crtool, bin)
	for _, args := range [][]string{
		{"dump", "--pid", "1", "-f", "/tmp/crtool-notroot.tar.gz"},
		{"restore", "-f", "/dev/null"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("crtool %v as nobody: %v %s, want exit 3", args, err, out)
		}
		if !strings.Contains(string(out), "must run as root") {
			t.Fatalf("crtool %v as nobody: %s", args, out)
		}
	}
}

// restoreFails restores archive, expects failure mentioning want, and checks
// that the restore left nothing behind: no cgroup, no process, no work
// directory, and the archive unchanged.
func restoreFails(t *testing.T, c *container, archive string, want string, extra ...string) result {
	t.Helper()
	before := fileHash(t, archive)
	work := t.TempDir()
	r := crtool(t, append([]string{"restore", "-f", archive, "--work-dir", work, "--allow-host-path", c.dir}, extra...)...)
	if r.code == 0 {
		t.Fatalf("restore succeeded: %s", r)
	}
	if !strings.Contains(r.stderr, want) {
		t.Fatalf("stderr %q lacks %q", r.stderr, want)
	}
	if dirs := c.cgroupDirs(); len(dirs) > 0 {
		t.Fatalf("failed restore left cgroups %v", dirs)
	}
	// Nothing stays in the work directory; CRIU's log, when CRIU ran,
	// moved to /var/log/crtool, where the error points.
	if entries, _ := os.ReadDir(work); len(entries) > 0 {
		t.Errorf("failed restore left %s in its work directory", entries[0].Name())
	}
	if strings.Contains(r.stderr, "CRIU log:") {
		keptLog(t, r.stderr)
	}
	if fileHash(t, archive) != before {
		t.Fatal("restore modified the archive")
	}
	return r
}

// keptLog checks that the error names CRIU's log under /var/log/crtool
// and that the log is there, and removes it when the test ends.
func keptLog(t *testing.T, stderr string) string {
	t.Helper()
	m := regexp.MustCompile(`CRIU log: (\S+)`).FindStringSubmatch(stderr)
	if m == nil || !strings.HasPrefix(m[1], "/var/log/crtool/") {
		t.Fatalf("the error does not name a CRIU log under /var/log/crtool: %s", stderr)
	}
	t.Cleanup(func() { _ = os.Remove(m[1]) })
	if st, err := os.Stat(m[1]); err != nil || st.Size() == 0 {
		t.Fatalf("the log the error names: %v", err)
	}
	return m[1]
}

func fileHash(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestRestoreBadArchives(t *testing.T) {
	c := newCounter(t)
	archive := c.dump()
	// Forget the original completely, so that anything a failed restore
	// creates shows.
	c.killAll()
	mustRun(t, env.runc, "--root", c.runcRoot, "delete", "-f", c.id)
	waitFor(t, 5*time.Second, "the cgroups to go", func() bool { return len(c.cgroupDirs()) == 0 })

	good, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	variant := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	corrupt := bytes.Clone(good)
	for i := len(corrupt) / 3; i < len(corrupt)/3+64; i++ {
		corrupt[i] ^= 0x5a
	}
	t.Run("truncated", func(t *testing.T) {
		restoreFails(t, c, variant("truncated.tar.gz", good[:len(good)/2]), "truncated")
	})
	t.Run("corrupt", func(t *testing.T) {
		restoreFails(t, c, variant("corrupt.tar.gz", corrupt), "corrupt")
	})
	t.Run("not an archive", func(t *testing.T) {
		restoreFails(t, c, variant("junk.tar.gz", []byte("this is not an archive at all\n")), "not a checkpoint archive")
	})
	t.Run("path escape", func(t *testing.T) {
		restoreFails(t, c, variant("evil.tar.gz", gzipTar(t, map[string]string{"../../crtool-evil": "x"})), "../../crtool-evil")
		if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "crtool-evil")); err == nil {
			t.Fatal("a hostile member escaped the work directory")
		}
	})
	t.Run("no images", func(t *testing.T) {
		restoreFails(t, c, variant("empty.tar.gz", gzipTar(t, map[string]string{"config.dump": "{}"})), "inventory.img is missing")
	})
	t.Run("no metadata", func(t *testing.T) {
		restoreFails(t, c, variant("bare.tar.gz", gzipTar(t, map[string]string{"checkpoint/inventory.img": "x"})), "neither crtool.json nor spec.dump")
	})
	t.Run("wrong root", func(t *testing.T) {
		// CRIU itself fails: the root has no busybox to map the process to.
		restoreFails(t, c, archive, "criu restore failed", "--root", t.TempDir())
		if pids := c.pids(); len(pids) > 0 {
			t.Fatalf("processes left after a failed restore: %v", pids)
		}
	})
	// The untouched archive still restores.
	c.restore(archive)
	c.waitCount(c.ask())
}

func gzipTar(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
