package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/crtool/crtool/internal/testutil"
)

// The scripts in testdata run the real crtool command through its main,
// checking what a user sees on stdout and stderr; they match words, not
// line numbers.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"crtool": func() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	ref := testutil.RequireReference(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			env.Setenv("REFERENCE", ref)
			return nil
		},
	})
}

func TestFlagName(t *testing.T) {
	for field, want := range map[string]string{
		"CreateBridge":   "--create-bridge",
		"PeerNetns":      "--peer-netns",
		"Name":           "--name",
		"PID":            "--pid",
		"TCPEstablished": "--tcp-established",
	} {
		if got := flagName(field); got != want {
			t.Errorf("flagName(%q) = %q, want %q", field, got, want)
		}
	}
}
