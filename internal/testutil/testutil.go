// Package testutil holds helpers shared by crtool's tests.
package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI, where a missing prerequisite is a
// failure rather than a reason to skip.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// Require fails the test (in CI) or skips it (elsewhere) when ok is false.
// A green CI run must never hide a missing CRIU, runc or root.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", why)
	}
	t.Skipf("prerequisite missing: %s", why)
}

// RequireRoot needs euid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "test needs root")
}

// PodmanArchives are the real Podman checkpoint archives under
// ReferenceDir()/archives (FORMAT.md section 0 there describes them).
var PodmanArchives = []string{
	"bb2-httpd-gzip.tar.gz",
	"bbloop-criu411-gzip.tar.gz",
	"nginx-gzip.tar.gz",
	"nginx-tcp-established-gzip.tar.gz",
	"nginx-zstd-default.tar.zst",
}

// ReferenceDir is the directory of real Podman checkpoint archives the tests
// read (never write): $CRTOOL_REFERENCE, else ../shared/reference/podman next
// to the checkout, else /work/shared/reference/podman. It returns "" when
// none exists.
func ReferenceDir() string {
	candidates := []string{os.Getenv("CRTOOL_REFERENCE")}
	if top, err := repoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(top, "..", "shared", "reference", "podman"))
	}
	candidates = append(candidates, "/work/shared/reference/podman")
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if st, err := os.Stat(filepath.Join(c, "archives")); err == nil && st.IsDir() {
			return filepath.Clean(c)
		}
	}
	return ""
}

// RequireReference returns ReferenceDir, failing (in CI) or skipping the
// test when the reference archives are missing.
func RequireReference(t testing.TB) string {
	t.Helper()
	dir := ReferenceDir()
	Require(t, dir != "", "the reference Podman archives (../shared/reference/podman) are missing; set CRTOOL_REFERENCE")
	return dir
}

// repoRoot finds the directory holding go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// WantError fails the test unless err is nil when want is "", or says want.
func WantError(t testing.TB, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one saying %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q, want one saying %q", err, want)
	}
}
