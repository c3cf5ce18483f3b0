package restore

import (
	"os"
	"testing"

	"github.com/crtool/crtool/internal/guardian"
)

// TestMain keeps the journals and locks of the unit tests' runs out of the
// host's /run/crtool.
func TestMain(m *testing.M) { os.Exit(guardian.RunTests(m)) }
