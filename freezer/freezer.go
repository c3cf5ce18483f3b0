// Package freezer freezes and thaws a cgroup, through the v1 freezer
// controller (freezer.state) or the cgroup v2 core (cgroup.freeze).
package freezer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// State of a freezer cgroup.
type State string

const (
	Thawed   State = "THAWED"
	Freezing State = "FREEZING"
	Frozen   State = "FROZEN"
)

// ErrTimeout means the cgroup did not reach the frozen state in time; the
// freezer thawed it again before returning.
var ErrTimeout = errors.New("freeze timed out")

// Freezer controls one cgroup directory.
type Freezer struct {
	dir string
	v2  bool
}

// New returns the freezer of the cgroup directory dir: a v1 freezer
// controller directory (with freezer.state) or a cgroup v2 directory (with
// cgroup.freeze).
func New(dir string) (*Freezer, error) {
	if _, err := os.Stat(filepath.Join(dir, "freezer.state")); err == nil {
		return &Freezer{dir: dir}, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.freeze")); err == nil {
		return &Freezer{dir: dir, v2: true}, nil
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("freezer %s: %w", dir, err)
	}
	return nil, fmt.Errorf("freezer %s: neither freezer.state nor cgroup.freeze exists (the root cgroup cannot be frozen)", dir)
}

// Dir is the cgroup directory.
func (f *Freezer) Dir() string { return f.dir }

// V2 reports whether this is a cgroup v2 freezer.
func (f *Freezer) V2() bool { return f.v2 }

// State reads the current state.
func (f *Freezer) State() (State, error) {
	if f.v2 {
		return f.stateV2()
	}
	b, err := os.ReadFile(filepath.Join(f.dir, "freezer.state"))
	if err != nil {
		return "", fmt.Errorf("read freezer state of %s: %w", f.dir, err)
	}
	return State(strings.TrimSpace(string(b))), nil
}

func (f *Freezer) stateV2() (State, error) {
	want, err := os.ReadFile(filepath.Join(f.dir, "cgroup.freeze"))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", filepath.Join(f.dir, "cgroup.freeze"), err)
	}
	frozen, err := f.eventsFrozen()
	if err != nil {
		return "", err
	}
	switch {
	case frozen:
		return Frozen, nil
	case strings.TrimSpace(string(want)) == "1":
		return Freezing, nil
	default:
		return Thawed, nil
	}
}

func (f *Freezer) eventsFrozen() (bool, error) {
	p := filepath.Join(f.dir, "cgroup.events")
	b, err := os.ReadFile(p)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == "frozen" {
			return strings.TrimSpace(v) == "1", nil
		}
	}
	return false, fmt.Errorf("%s has no frozen key", p)
}

func (f *Freezer) request(s State) error {
	file, val := "freezer.state", string(s)
	if f.v2 {
		file, val = "cgroup.freeze", "0"
		if s == Frozen {
			val = "1"
		}
	}
	p := filepath.Join(f.dir, file)
	if err := os.WriteFile(p, []byte(val), 0); err != nil {
		return fmt.Errorf("write %s to %s: %w", val, p, err)
	}
	return nil
}

// Freeze freezes the cgroup and waits until every task in it is frozen,
// polling with a short, growing interval so that a small container is
// reported frozen within a few hundred microseconds. It returns how long
// freezing took. On timeout or cancellation the cgroup is thawed again.
func (f *Freezer) Freeze(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := f.request(Frozen); err != nil {
		return 0, err
	}
	deadline := start.Add(timeout)
	lastKick := start
	delay := time.Duration(0)
	for {
		st, err := f.State()
		if err != nil {
			_ = f.Thaw()
			return 0, err
		}
		if st == Frozen {
			return time.Since(start), nil
		}
		now := time.Now()
		if now.After(deadline) {
			err := fmt.Errorf("freeze %s: %w after %v (state %s): a task may be stuck in uninterruptible sleep", f.dir, ErrTimeout, timeout, st)
			if terr := f.Thaw(); terr != nil {
				err = fmt.Errorf("%w; thaw: %w", err, terr)
			}
			return 0, err
		}
		if ctx.Err() != nil {
			_ = f.Thaw()
			return 0, fmt.Errorf("freeze %s: %w", f.dir, ctx.Err())
		}
		// The v1 freezer can stay in FREEZING when a task was in vfork or
		// in the middle of a signal delivery; a thaw and refreeze unsticks
		// it (runc does the same).
		if !f.v2 && now.Sub(lastKick) > 50*time.Millisecond {
			_ = f.request(Thawed)
			if err := f.request(Frozen); err != nil {
				_ = f.Thaw()
				return 0, err
			}
			lastKick = now
		}
		sleep(&delay)
	}
}

// sleep backs off from a busy yield to 1 ms.
func sleep(delay *time.Duration) {
	switch {
	case *delay == 0:
		*delay = 10 * time.Microsecond
	case *delay < time.Millisecond:
		*delay *= 2
	}
	time.Sleep(*delay)
}

// Thaw thaws the cgroup and waits until it is no longer frozen. Thawing a
// thawed cgroup is a no-op. A cgroup that no longer exists counts as thawed.
func (f *Freezer) Thaw() error {
	if err := f.request(Thawed); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	delay := time.Duration(0)
	for {
		st, err := f.State()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if st == Thawed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("thaw %s: still %s after 10s (is a parent cgroup frozen?)", f.dir, st)
		}
		sleep(&delay)
	}
}
