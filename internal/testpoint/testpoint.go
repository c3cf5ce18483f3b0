// Package testpoint lets the integration tests stop crtool at a named step
// to kill it there: with CRTOOL_TESTPOINT=NAME in its environment, crtool
// announces on stderr that it reached NAME and then waits to be killed.
// Without the variable every call is a no-op; nothing else reads it.
package testpoint

import (
	"fmt"
	"os"
	"time"
)

// Env names the step to stop at.
const Env = "CRTOOL_TESTPOINT"

// Active says whether the tests asked to stop at name.
func Active(name string) bool { return name != "" && os.Getenv(Env) == name }

// Reach stops here, forever, if the tests asked to stop at name.
func Reach(name string) {
	if !Active(name) {
		return
	}
	fmt.Fprintf(os.Stderr, "crtool: testpoint %s reached\n", name)
	for {
		// Sleeping, not blocking forever: the runtime would call a program
		// whose goroutines all block a deadlock and exit.
		time.Sleep(time.Hour)
	}
}

// CRIU returns a CRIU notification callback that stops at name when CRIU
// sends the action script event (for example "post-dump", "pre-resume"),
// while CRIU still holds the tasks; nil when the tests did not ask.
func CRIU(name, event string) func(script string, pid int32) error {
	if !Active(name) {
		return nil
	}
	return func(script string, _ int32) error {
		if script == event {
			Reach(name)
		}
		return nil
	}
}
