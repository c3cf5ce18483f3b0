// Package testutil holds helpers shared by crtool's tests.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
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

// Main runs a suite's tests as TestMain does, after prerequisites has said
// what is missing ("" for nothing): in CI that fails the whole run at once.
// cleanup runs after the tests; Main then exits with their code.
func Main(m *testing.M, suite string, prerequisites func() string, cleanup func()) {
	if missing := prerequisites(); missing != "" && InCI() {
		fmt.Fprintf(os.Stderr, "%s cannot run in CI: %s\n", suite, missing)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
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

// CrtoolBinary returns the crtool binary under test: $CRTOOL_BIN, else one
// it builds from this checkout into a new directory, which it returns as
// built for the caller to remove.
func CrtoolBinary() (bin, built string, err error) {
	if bin = os.Getenv("CRTOOL_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", "", fmt.Errorf("crtool binary: %w", err)
		}
		return bin, "", nil
	}
	top, err := repoRoot()
	if err != nil {
		return "", "", fmt.Errorf("find the checkout to build crtool: %w", err)
	}
	if built, err = os.MkdirTemp("", "crtool-test-bin-"); err != nil {
		return "", "", err
	}
	bin = filepath.Join(built, "crtool")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/crtool")
	cmd.Dir = top
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(built)
		return "", "", fmt.Errorf("build crtool: %w: %s", err, out)
	}
	return bin, built, nil
}

// Exited reports whether pid has exited (a zombie counts: it waits only for
// its parent to reap it).
func Exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
