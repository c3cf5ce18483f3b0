// Package undo collects the steps that revert changes to the host, so that a failed dump or restore leaves the host as it found it.
package undo

import (
	"errors"
	"fmt"
)

type step struct {
	what string
	fn   func() error
	rec  *Record
}

// Record describes an undo step as data, so that another process can
// perform it after this one died: the guardian and `crtool recover` (see
// internal/guardian) carry out a journal of records. Kind says what to do;
// the other fields are its arguments.
type Record struct {
	Kind  string   `json:"kind"`
	What  string   `json:"what"`
	Path  string   `json:"path,omitempty"`
	Netns string   `json:"netns,omitempty"`
	Name  string   `json:"name,omitempty"`
	Paths []string `json:"paths,omitempty"`
}

// Stack holds undo steps; Run performs them newest first. The zero value is
// ready to use.
type Stack struct {
	steps []step
	// Journal, when set, receives the records of the steps on the stack,
	// oldest first, whenever a recorded step is pushed or the stack is
	// emptied: the journal a guardian acts on if this process dies.
	Journal func([]Record) error
}

// Push registers fn, which undoes what describes ("thaw /sys/fs/cgroup/x").
func (s *Stack) Push(what string, fn func() error) {
	s.steps = append(s.steps, step{what: what, fn: fn})
}

// PushRecord registers fn as Push does, with rec, the same undo as data
// for the journal. An error writing the journal is returned: the step is
// on the stack, but nothing would undo it if this process died.
func (s *Stack) PushRecord(what string, rec Record, fn func() error) error {
	rec.What = what
	s.steps = append(s.steps, step{what: what, fn: fn, rec: &rec})
	return s.journal()
}

// Records are the records of the steps on the stack, oldest first.
func (s *Stack) Records() []Record {
	var out []Record
	for _, st := range s.steps {
		if st.rec != nil {
			out = append(out, *st.rec)
		}
	}
	return out
}

func (s *Stack) journal() error {
	if s.Journal == nil {
		return nil
	}
	if err := s.Journal(s.Records()); err != nil {
		return fmt.Errorf("write the undo journal: %w", err)
	}
	return nil
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
	if err := s.journal(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Release forgets the steps without running them: the operation committed.
// The journal keeps them until its owner ends it (a dump commits only once
// the container is stopped, after its rollback was released).
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
