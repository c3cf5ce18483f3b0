package restore

import (
	"fmt"
	"os"
	"testing"

	"github.com/crtool/crtool/internal/guardian"
)

// TestMain keeps the journals and locks of the unit tests' runs in a
// directory of their own: the host's /run/crtool is for real runs.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "crtool-unit-guardian-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	guardian.Dir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
