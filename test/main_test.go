// Package test holds crtool's integration tests: they start real containers
// with runc, dump and restore them with the crtool binary and real CRIU, and
// check what the container's peers see.
package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/testutil"
)

// env holds what every test needs; TestMain fills it.
var env struct {
	crtool  string // the crtool binary under test
	criu    string
	runc    string
	busybox string
	missing string // why the prerequisites are not met
}

func TestMain(m *testing.M) {
	env.missing = prerequisites()
	if env.missing != "" && testutil.InCI() {
		fmt.Fprintf(os.Stderr, "integration tests cannot run in CI: %s\n", env.missing)
		os.Exit(1)
	}
	code := m.Run()
	if builtHere != "" {
		os.RemoveAll(builtHere)
	}
	// The tests' cgroups share a parent; it goes when the last one has.
	// Podman puts conmon into a "conmon" cgroup under the parent of the
	// containers it imports (ours, from config.dump).
	parents, _ := filepath.Glob("/sys/fs/cgroup/*/crtool-test")
	for _, p := range parents {
		_ = os.Remove(filepath.Join(p, "conmon"))
		_ = os.Remove(p)
	}
	os.Exit(code)
}

// builtHere is the directory of a crtool binary the tests built themselves.
var builtHere string

// prerequisites finds root, CRIU, runc, busybox and the crtool binary, and
// says what is missing.
func prerequisites() string {
	if os.Geteuid() != 0 {
		return "integration tests need root"
	}
	bin, err := criu.Open(context.Background(), "")
	if err != nil {
		return fmt.Sprintf("CRIU: %v", err)
	}
	env.criu = bin.Path
	if env.runc, err = exec.LookPath("runc"); err != nil {
		return "runc is not installed: run 'make deps'"
	}
	env.busybox = "/bin/busybox"
	if out, err := exec.Command(env.busybox, "--list").Output(); err != nil || len(out) == 0 {
		return "busybox-static is not installed: run 'make deps'"
	}
	env.crtool = os.Getenv("CRTOOL_BIN")
	if env.crtool == "" {
		// Outside make, build the binary under test once.
		dir, err := os.MkdirTemp("", "crtool-test-bin-")
		if err != nil {
			return err.Error()
		}
		builtHere = dir
		env.crtool = filepath.Join(dir, "crtool")
		cmd := exec.Command("go", "build", "-o", env.crtool, "../cmd/crtool")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Sprintf("build crtool: %v: %s", err, out)
		}
	}
	if _, err := os.Stat(env.crtool); err != nil {
		return fmt.Sprintf("crtool binary: %v", err)
	}
	return ""
}

// requireEnv fails (in CI) or skips a test when prerequisites are missing.
func requireEnv(t *testing.T) {
	t.Helper()
	testutil.Require(t, env.missing == "", env.missing)
}
