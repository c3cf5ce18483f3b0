// Package undo collects the steps that revert changes to the host, so that a failed dump or restore leaves the host as it found it.
package undo

import (
	"errors"
	"fmt"
)

type step struct {
	what string
	fn   func() error
}

// Stack holds undo steps; Run performs them newest first. The zero value is
// ready to use.
type Stack struct {
	steps []step
}

// Push registers fn, which undoes what describes ("thaw /sys/fs/cgroup/x").
func (s *Stack) Push(what string, fn func() error) {
	s.steps = append(s.steps, step{what: what, fn: fn})
}

// Run performs the registered steps newest first and forgets them. Every
// step runs, whatever the others return; the failures come back joined,
// each wrapped with what its step undoes.
func (s *Stack) Run() error {
	var errs []error
	for i := len(s.steps) - 1; i >= 0; i-- {
		st := s.steps[i]
		if err := st.fn(); err != nil {
			errs = append(errs, fmt.Errorf("undo %s: %w", st.what, err))
		}
	}
	s.steps = nil
	return errors.Join(errs...)
}

// Release forgets the steps without running them: the operation committed.
func (s *Stack) Release() { s.steps = nil }

// Len is the number of steps registered.
func (s *Stack) Len() int { return len(s.steps) }

// Failures splits an error of Run into the failed steps, one error each.
func Failures(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
