// Package itest finds what crtool's integration suites need: root, CRIU,
// runc and the crtool binary under test.
package itest

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/testutil"
)

// Tools are the programs an integration suite runs.
type Tools struct {
	Crtool string // the binary under test
	CRIU   string
	Runc   string
	built  string // a directory the crtool binary was built into
}

// Find looks for root, CRIU, runc and the crtool binary (building it when
// $CRTOOL_BIN is unset). missing says what is not there, "" when all is.
func Find() (t *Tools, missing string) {
	t = &Tools{}
	if os.Geteuid() != 0 {
		return t, "the integration tests need root"
	}
	bin, err := criu.Open(context.Background(), "")
	if err != nil {
		return t, fmt.Sprintf("CRIU: %v", err)
	}
	t.CRIU = bin.Path
	if t.Runc, err = exec.LookPath("runc"); err != nil {
		return t, "runc is not installed: run 'make deps'"
	}
	if t.Crtool, t.built, err = testutil.CrtoolBinary(); err != nil {
		return t, err.Error()
	}
	return t, ""
}

// Close removes a crtool binary Find built.
func (t *Tools) Close() {
	if t.built != "" {
		os.RemoveAll(t.built)
	}
}
