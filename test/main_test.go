// Package test holds crtool's integration tests: they start real containers
// with runc, dump and restore them with the crtool binary and real CRIU, and
// check what the container's peers see.
package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/crtool/crtool/internal/testutil"
	"github.com/crtool/crtool/internal/testutil/itest"
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
	var tools *itest.Tools
	testutil.Main(m, "integration tests", func() string {
		tools, env.missing = itest.Find()
		if env.missing == "" {
			env.missing = findBusybox()
		}
		env.crtool, env.criu, env.runc = tools.Crtool, tools.CRIU, tools.Runc
		return env.missing
	}, func() {
		tools.Close()
		// The tests' cgroups share a parent; it goes when the last one has.
		// Podman puts conmon into a "conmon" cgroup under the parent of the
		// containers it imports (ours, from config.dump).
		parents, _ := filepath.Glob("/sys/fs/cgroup/*/crtool-test")
		for _, p := range parents {
			_ = os.Remove(filepath.Join(p, "conmon"))
			_ = os.Remove(p)
		}
	})
}

// findBusybox finds the static busybox the test containers are made of.
func findBusybox() string {
	env.busybox = "/bin/busybox"
	if out, err := exec.Command(env.busybox, "--list").Output(); err != nil || len(out) == 0 {
		return "busybox-static is not installed: run 'make deps'"
	}
	return ""
}

// requireEnv fails (in CI) or skips a test when prerequisites are missing.
func requireEnv(t *testing.T) {
	t.Helper()
	testutil.Require(t, env.missing == "", env.missing)
}
