// Package undo collects the steps that revert changes to the host, so that a
// failed dump or restore leaves the host as it found it.
package undo

// Stack holds undo steps; Run performs them newest first.
type Stack struct {
	steps []func()
}

// Push registers a step.
func (s *Stack) Push(f func()) { s.steps = append(s.steps, f) }

// Run performs the registered steps in reverse order and forgets them.
func (s *Stack) Run() {
	for i := len(s.steps) - 1; i >= 0; i-- {
		s.steps[i]()
	}
	s.steps = nil
}

// Release forgets the steps without running them: the operation committed.
func (s *Stack) Release() { s.steps = nil }
