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

// TestEscapeControl: names and log lines from an archive cannot drive the
// terminal or break the one-line error.
func TestEscapeControl(t *testing.T) {
	for in, want := range map[string]string{
		"plain: /var/lib/x":           "plain: /var/lib/x",
		"criu:\n  Error (x): y":       "criu:\n  Error (x): y",
		"name \x1b[2Jgone\r":          `name \x1b[2Jgone\r`,
		"bad \xff utf8":               `bad \xff utf8`,
		"bell\a and del\x7f, ünïcode": `bell\a and del\x7f, ünïcode`,
	} {
		if got := escapeControl(in); got != want {
			t.Errorf("escapeControl(%q) = %q, want %q", in, got, want)
		}
	}
}
