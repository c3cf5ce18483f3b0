// Package guardian keeps crtool's promise that nothing is lost when crtool
// itself dies. From the first change a dump or restore makes to the host,
// a journal under /run/crtool/journal lists how to undo each change, and a
// guardian process (crtool re-executed, in its own session) holds one end
// of a pipe to the crtool that started it. If that crtool exits or is
// killed before it commits, the pipe closes and the guardian carries out
// the journal, newest step first: it thaws the container, removes crtool's
// network locks, staged images and temporary archive, or, for a restore,
// kills the half-restored tree and removes the namespaces, cgroups, mounts
// and directories the restore created.
//
// A lock per container (an flock on /run/crtool/locks/KEY.lock, held by
// crtool and inherited by its guardian) keeps two crtool processes off the
// same container. A journal whose lock nobody holds belongs to a run that
// died with its guardian (or a host that lost power): `crtool check`
// reports it and `crtool recover` carries it out.
package guardian

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/undo"
)

// Command is the hidden crtool subcommand that runs a guardian; crtool's
// main hands it to Main before parsing flags.
const Command = "__guardian"

var (
	// Dir holds the journals and the per-container locks.
	Dir = "/run/crtool"
	// Exe is the crtool binary to re-execute as the guardian; empty (as in
	// unit tests of the packages that use this one) runs no guardian but
	// still keeps the journal and the lock.
	Exe string
)

// Journal is what a guardian or `crtool recover` reads: which run made the
// changes and how to undo them, oldest first.
type Journal struct {
	Op      string        `json:"op"`      // "dump" or "restore"
	Subject string        `json:"subject"` // the container: its cgroup or name
	PID     int           `json:"pid"`     // the crtool that wrote it
	Started time.Time     `json:"started"`
	Lock    string        `json:"lock"` // lock file held while the run or its guardian lives
	Steps   []undo.Record `json:"steps"`
}

// Guard is one run's journal, lock and guardian.
type Guard struct {
	path     string
	j        Journal
	lock     *os.File
	pipe     *os.File // write end; closing it without commit wakes the guardian
	guardian *exec.Cmd
}

// Start takes the lock of subject (the container's freezer cgroup for a
// dump, its name for a restore), creates the journal and starts the
// guardian, then makes stack journal every recorded step. It fails with a
// conflict when another crtool holds the lock.
func Start(op, subject string, stack *undo.Stack) (*Guard, error) {
	return StartKeyed(op, subject, subject, stack)
}

// StartKeyed is Start with a lock of key rather than of subject: a run
// that must exclude no other (a restore: names are the pre-flight's to
// check) passes a key of its own.
func StartKeyed(op, subject, key string, stack *undo.Stack) (*Guard, error) {
	for _, d := range []string{journalDir(), lockDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	lockPath := filepath.Join(lockDir(), lockName(key))
	lock, err := takeLock(lockPath)
	if err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errdefs.Newf(errdefs.ErrConflict, "%s is being checkpointed or restored by another crtool (or its guardian is undoing one): wait for it to finish", subject)
		}
		return nil, err
	}
	g := &Guard{
		lock: lock,
		j:    Journal{Op: op, Subject: subject, PID: os.Getpid(), Started: time.Now().UTC(), Lock: lockPath},
	}
	g.path = filepath.Join(journalDir(), fmt.Sprintf("%s-%d-%d.json", op, os.Getpid(), time.Now().UnixNano()))
	if err := g.write(nil); err != nil {
		g.unlock()
		return nil, err
	}
	if Exe != "" {
		if err := g.spawn(); err != nil {
			_ = os.Remove(g.path)
			g.unlock()
			return nil, err
		}
	}
	stack.Journal = g.write
	return g, nil
}

// spawn starts the guardian in a session of its own, so that a signal to
// crtool's process group (Ctrl-C, a killed shell) does not reach it.
func (g *Guard) spawn() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("guardian pipe: %w", err)
	}
	cmd := exec.Command(Exe, Command, g.path)
	cmd.ExtraFiles = []*os.File{r, g.lock} // fd 3: the pipe, fd 4: the lock
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("start the guardian %s: %w", Exe, err)
	}
	r.Close()
	g.pipe, g.guardian = w, cmd
	return nil
}

// write replaces the journal with steps, atomically.
func (g *Guard) write(steps []undo.Record) error {
	g.j.Steps = steps
	b, err := json.MarshalIndent(g.j, "", "  ")
	if err != nil {
		return fmt.Errorf("encode journal: %w", err)
	}
	tmp := g.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write journal %s: %w", g.path, err)
	}
	if err := os.Rename(tmp, g.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write journal %s: %w", g.path, err)
	}
	return nil
}

// Done ends the run: it committed, or its own rollback already undid what
// the journal lists. The guardian exits without acting, the journal goes,
// and the lock is released. stack stops journaling.
func (g *Guard) Done(stack *undo.Stack) {
	if g == nil {
		return
	}
	stack.Journal = nil
	if g.pipe != nil {
		_, _ = g.pipe.Write([]byte("C"))
		g.pipe.Close()
		_ = g.guardian.Wait()
	}
	_ = os.Remove(g.path)
	// Nothing is left to guard: the lock file goes too, so that locks do
	// not pile up in /run/crtool/locks with every container.
	dropLock(g.lock, g.j.Lock)
	g.unlock()
}

// takeLock opens and flocks the lock file at path. A holder that finished
// unlinks the file before it unlocks (dropLock): a lock taken on a file no
// longer at path guards nothing, and is taken again on the new one.
func takeLock(path string) (*os.File, error) {
	for {
		lock, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open lock %s: %w", path, err)
		}
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			lock.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, err
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if samePath(lock, path) {
			return lock, nil
		}
		lock.Close()
	}
}

// samePath says whether f is the file at path.
func samePath(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// dropLock unlinks the lock file at path, held through f, while f still
// holds it.
func dropLock(f *os.File, path string) {
	if samePath(f, path) {
		_ = os.Remove(path)
	}
}

func (g *Guard) unlock() {
	_ = unix.Flock(int(g.lock.Fd()), unix.LOCK_UN)
	g.lock.Close()
}

func journalDir() string { return filepath.Join(Dir, "journal") }
func lockDir() string    { return filepath.Join(Dir, "locks") }

// lockName is a file name for subject, which may be a path.
func lockName(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return hex.EncodeToString(sum[:8]) + ".lock"
}

// Main is the guardian: args is the journal's path; fd 3 is the read end
// of the pipe from the crtool that started it, fd 4 that crtool's lock. It
// returns the exit status.
func Main(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "crtool: guardian: internal command, not for use by hand")
		return 2
	}
	// The guardian must outlive whatever ends crtool.
	for _, s := range []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE, syscall.SIGQUIT} {
		signal.Ignore(s)
	}
	pipe := os.NewFile(3, "guardian-pipe")
	lock := os.NewFile(4, "guardian-lock")
	defer lock.Close()
	buf := make([]byte, 1)
	n, _ := io.ReadFull(pipe, buf)
	if n == 1 && buf[0] == 'C' {
		return 0
	}
	// crtool is gone without committing.
	j, err := readJournal(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "crtool: guardian: %v\n", err)
		return 1
	}
	failed := Undo(j, func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "crtool: guardian: "+format+"\n", a...)
	})
	if failed == 0 {
		_ = os.Remove(args[0])
		dropLock(lock, j.Lock)
	}
	return 0
}

// Undo carries out a journal's steps newest first and reports each failure
// through warnf; it returns the number of steps that failed.
func Undo(j *Journal, warnf func(string, ...any)) int {
	failed := 0
	for i := len(j.Steps) - 1; i >= 0; i-- {
		st := j.Steps[i]
		if err := Perform(st); err != nil {
			failed++
			warnf("undo %s: %v", st.What, err)
		}
	}
	return failed
}

func readJournal(path string) (*Journal, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var j Journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return &j, nil
}

// Stale is a journal whose run and guardian are both gone.
type Stale struct {
	Path string
	Journal
}

// Leftovers lists the journals that nobody holds: runs killed together with
// their guardian, or interrupted by a crash of the host.
func Leftovers() ([]Stale, error) {
	paths, err := filepath.Glob(filepath.Join(journalDir(), "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Stale
	for _, p := range paths {
		j, err := readJournal(p)
		if err != nil {
			return nil, err
		}
		held, err := lockHeld(j.Lock)
		if err != nil {
			return nil, err
		}
		if !held {
			out = append(out, Stale{Path: p, Journal: *j})
		}
	}
	return out, nil
}

// lockHeld says whether a live crtool or guardian holds the lock at path.
func lockHeld(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open lock %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return true, nil
		}
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false, nil
}

// Recover carries out every stale journal, holding its lock meanwhile, and
// removes the journals it completed. It returns the journals it handled and
// the number of steps that failed.
func Recover(warnf func(string, ...any)) ([]Stale, int, error) {
	stale, err := Leftovers()
	if err != nil {
		return nil, 0, err
	}
	failed := 0
	var done []Stale
	for _, s := range stale {
		f, err := os.OpenFile(s.Lock, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return done, failed, fmt.Errorf("open lock %s: %w", s.Lock, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			continue // taken meanwhile: a live run's now
		}
		n := Undo(&s.Journal, warnf)
		failed += n
		if n == 0 {
			_ = os.Remove(s.Path)
			dropLock(f, s.Lock)
		}
		f.Close()
		done = append(done, s)
	}
	return done, failed, nil
}

// Describe is a one-line account of a journal for `crtool check`.
func (s Stale) Describe() string {
	var what []string
	for _, st := range s.Steps {
		what = append(what, st.What)
	}
	return fmt.Sprintf("%s of %s by crtool pid %s at %s left %d step(s) to undo: %s",
		s.Op, s.Subject, strconv.Itoa(s.PID), s.Started.Format(time.RFC3339), len(s.Steps), strings.Join(what, "; "))
}

// RunTests runs a package's tests with journals and locks in a directory
// of their own, for TestMain of packages whose tests start runs: the
// host's Dir is for real runs.
func RunTests(m interface{ Run() int }) int {
	dir, err := os.MkdirTemp("", "crtool-unit-guardian-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	Dir = dir
	return m.Run()
}
