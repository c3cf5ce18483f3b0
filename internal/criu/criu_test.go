package criu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want Version
		ok   bool
	}{
		{"Version: 4.2.1\n", Version{4, 2, 1}, true},
		{"Version: 3.17.1\nGitID: v3.17.1\n", Version{3, 17, 1}, true},
		{"Version: 4.2\n", Version{4, 2, 0}, true},
		{"criu: command not found", Version{}, false},
	} {
		v, err := ParseVersion(tc.out)
		if (err == nil) != tc.ok || v != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v ok=%v", tc.out, v, err, tc.want, tc.ok)
		}
	}
	if !(Version{4, 2, 1}).AtLeast(MinVersion) || (Version{4, 1, 9}).AtLeast(MinVersion) || !(Version{5, 0, 0}).AtLeast(MinVersion) {
		t.Error("AtLeast compares wrongly")
	}
}

func fakeCriu(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindOrder(t *testing.T) {
	envBin := fakeCriu(t, "echo Version: 4.2.1")
	t.Setenv(EnvPath, envBin)
	if p, src, _ := Find("/explicit/criu"); p != "/explicit/criu" || src != "--criu" {
		t.Errorf("explicit: %s %s", p, src)
	}
	if p, src, _ := Find(""); p != envBin || src != "$"+EnvPath {
		t.Errorf("env: %s %s", p, src)
	}
	t.Setenv(EnvPath, "")
	old := PrivatePath
	PrivatePath = envBin
	defer func() { PrivatePath = old }()
	if p, src, _ := Find(""); p != envBin || src != "private prefix" {
		t.Errorf("private: %s %s", p, src)
	}
	PrivatePath = "/nonexistent/criu"
	t.Setenv("PATH", t.TempDir())
	if _, _, err := Find(""); !errors.Is(err, ErrNotFound) {
		t.Errorf("nothing anywhere: %v", err)
	}
}

func TestOpenChecksVersion(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, fakeCriu(t, "echo Version: 4.1.1")); !errors.Is(err, ErrTooOld) {
		t.Fatalf("4.1.1: %v, want ErrTooOld", err)
	}
	b, err := Open(ctx, fakeCriu(t, "echo Version: 4.2.1"))
	if err != nil || b.Version != (Version{4, 2, 1}) {
		t.Fatalf("4.2.1: %v %v", b, err)
	}
	if _, err := Open(ctx, "/nonexistent/criu"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v, want ErrNotFound", err)
	}
}

func TestLogErrors(t *testing.T) {
	log := filepath.Join(t.TempDir(), "dump.log")
	content := `(00.000001) CRIU run id = x
(00.042141) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.052113) Error (criu/mount.c:753): mnt: 84:./sys/fs/cgroup/systemd doesn't have a proper root mount
(00.052200) some debug line
(00.053431) Error (criu/cr-dump.c:1975): Dumping FAILED.
(00.053431) Error (criu/cr-dump.c:1975): Dumping FAILED.
`
	if err := os.WriteFile(log, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	got := LogErrors(log, 10)
	want := []string{
		"(00.052113) Error (criu/mount.c:753): mnt: 84:./sys/fs/cgroup/systemd doesn't have a proper root mount",
		"(00.053431) Error (criu/cr-dump.c:1975): Dumping FAILED.",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("LogErrors = %q\nwant %q", got, want)
	}
	if got := LogErrors(log, 1); len(got) != 1 {
		t.Fatalf("max not honoured: %q", got)
	}
	if LogErrors("/nonexistent", 5) != nil {
		t.Fatal("unreadable log gave lines")
	}
	if m := errorMessage(want[0]); m != "mnt: 84:./sys/fs/cgroup/systemd doesn't have a proper root mount" {
		t.Fatalf("errorMessage = %q", m)
	}
}

func TestRunQuotesStderrOfFailingCriu(t *testing.T) {
	b := &Binary{Path: fakeCriu(t, `echo "cannot do this: reason" >&2; exit 3`)}
	_, err := b.Run(context.Background(), Request{Type: rpc.CriuReqType_DUMP, Opts: &rpc.CriuOpts{}})
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Run error %v is not a *criu.Error", err)
	}
	if !strings.Contains(err.Error(), "cannot do this: reason") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("error does not explain: %v", err)
	}
}

func TestRunCancelKillsCriu(t *testing.T) {
	b := &Binary{Path: fakeCriu(t, `exec sleep 60`)}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Run(ctx, Request{Type: rpc.CriuReqType_DUMP, Opts: &rpc.CriuOpts{}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run error = %v, want the context's", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run returned after %v: CRIU was not killed", d)
	}
	if !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("error = %v", err)
	}
}

func TestVersionCache(t *testing.T) {
	old := VersionCache
	defer func() { VersionCache = old }()
	VersionCache = filepath.Join(t.TempDir(), "criu-version.json")
	bin := fakeCriu(t, "echo Version: 4.2.1")
	b, err := Open(context.Background(), bin)
	if err != nil || b.Version != (Version{4, 2, 1}) {
		t.Fatalf("first Open: %v %v", b, err)
	}
	if _, err := os.Stat(VersionCache); err != nil {
		t.Fatalf("no cache written: %v", err)
	}
	// The same binary is not run again; a changed one is.
	if err := os.WriteFile(bin+".marker", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := Open(context.Background(), bin); err != nil || b.Version != (Version{4, 2, 1}) {
		t.Fatalf("cached Open: %v %v", b, err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho Version: 4.1.1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), bin); !errors.Is(err, ErrTooOld) {
		t.Fatalf("a replaced binary was taken from the cache: %v", err)
	}
}

func TestMain(m *testing.M) {
	// Keep the tests' fake binaries out of the host's version cache.
	dir, err := os.MkdirTemp("", "crtool-criu-test-")
	if err == nil {
		VersionCache = filepath.Join(dir, "criu-version.json")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
