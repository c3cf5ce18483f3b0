package main

import (
	"os"
	"testing"

	"github.com/crtool/crtool/internal/testutil"
	"github.com/rogpeppe/go-internal/testscript"
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
