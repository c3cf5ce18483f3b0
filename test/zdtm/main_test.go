// Package zdtm runs CRIU's own zdtm tests through crtool: each test runs as
// the only workload of a runc container, crtool dumps and restores the
// container, and the test checks its own state afterwards. The same tests
// checkpointed with runc and the same CRIU are the control: a test runc
// passes must pass through crtool.
package zdtm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/crtool/crtool/internal/testutil"
	"github.com/crtool/crtool/internal/testutil/itest"
)

// env holds what every test needs; TestMain fills it.
var env struct {
	crtool  string // the crtool binary under test
	criu    string
	runc    string
	build   string // test/zdtm/build.sh's output: one directory per test
	missing string // why the prerequisites are not met
}

func TestMain(m *testing.M) {
	var tools *itest.Tools
	testutil.Main(m, "zdtm tests", func() string {
		tools, env.missing = itest.Find()
		if env.missing == "" {
			env.missing = buildTests()
		}
		env.crtool, env.criu, env.runc = tools.Crtool, tools.CRIU, tools.Runc
		return env.missing
	}, func() {
		tools.Close()
		// The tests' cgroups share a parent; it goes when the last one has.
		for _, p := range cgroupParents() {
			_ = os.Remove(p)
		}
	})
}

// buildTests has build.sh build the selected tests (or find them built)
// and says what went wrong.
func buildTests() string {
	out, err := exec.Command("./build.sh").Output()
	if err != nil {
		msg := err.Error()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return fmt.Sprintf("build zdtm tests (run 'make deps-zdtm'): %s", msg)
	}
	env.build = strings.TrimSpace(string(out))
	return ""
}

// zdtmTest is one line of selection.txt: a test and the options its dump
// and restore need (zdtm's .desc "opts").
type zdtmTest struct {
	name string
	opts []string
}

// readSelection parses selection.txt: a test name per line, then options;
// '#' starts a comment.
func readSelection(path string) ([]zdtmTest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []zdtmTest
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		for _, o := range fields[1:] {
			if o != "--tcp-established" {
				return nil, fmt.Errorf("%s: test %s: unknown option %s", path, fields[0], o)
			}
		}
		out = append(out, zdtmTest{name: fields[0], opts: fields[1:]})
	}
	return out, sc.Err()
}
