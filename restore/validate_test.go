package restore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/trust"
)

// TestMapMountsRefusesHostPaths: a bind source the archive alone names is
// not mounted into the container, "/" least of all.
func TestMapMountsRefusesHostPaths(t *testing.T) {
	for _, src := range []string{"/", "/etc", "/root/.ssh"} {
		md := &format.Metadata{Mounts: []format.ExternalMount{{Key: "/host", Kind: format.MountBind, Source: src}}}
		_, err := mapMounts(md, trust.Policy{})
		if err == nil || !strings.Contains(err.Error(), "externalMounts[0].source") || !strings.Contains(err.Error(), "AllowHostPath") {
			t.Errorf("source %s: err = %v", src, err)
		}
	}
	md := &format.Metadata{Mounts: []format.ExternalMount{{Key: "/host", Kind: format.MountBind, Source: "/etc"}}}
	if got, err := mapMounts(md, trust.Policy{HostPaths: []string{"/etc"}}); err != nil || got[0].GetVal() != "/etc" {
		t.Errorf("allowed /etc: %v, %v", got, err)
	}
}

// TestOpenExternalFileRefuses: files the archive names are opened only
// where allowed, never a FIFO (which would block the restore forever).
func TestOpenExternalFileRefuses(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path  string
		allow []string
	}{
		{"/etc/shadow", nil},
		{"/etc/passwd", []string{dir}},
		{fifo, []string{dir}},
	} {
		done := make(chan error, 1)
		go func() {
			f, err := openExternalFile(2, format.ExternalFile{Key: "file[1:2]", Kind: format.FileReg, Path: tc.path, Flags: unix.O_WRONLY}, "", trust.Policy{HostPaths: tc.allow})
			if f != nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "externalFiles[2].path") {
				t.Errorf("%s: err = %v", tc.path, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still opening after 5s", tc.path)
		}
	}
}

// TestOperatorFilesNoFollow: --log and --pid-file are not written through
// a symlink planted in their place.
func TestOperatorFilesNoFollow(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("canary"), 0o600); err != nil {
		t.Fatal(err)
	}
	log, pidFile := filepath.Join(dir, "log"), filepath.Join(dir, "pid")
	for _, l := range []string{log, pidFile, pidFile + ".tmp"} {
		if err := os.Symlink(victim, l); err != nil {
			t.Fatal(err)
		}
	}
	if f, err := openExternalFile(0, format.ExternalFile{Key: "pipe:[1]", Kind: format.FilePipe, Flags: unix.O_WRONLY}, log, trust.Policy{}); err == nil {
		f.Close()
		t.Error("--log through a symlink opened")
	}
	if err := writePidFile(pidFile, 42); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "canary" {
		t.Errorf("victim now holds %q", b)
	}
	if b, _ := os.ReadFile(pidFile); string(b) != "42" {
		t.Errorf("pid file holds %q", b)
	}
	if st, err := os.Lstat(pidFile); err != nil || st.Mode()&os.ModeSymlink != 0 || st.Mode().Perm() != 0o644 {
		t.Errorf("pid file: %v, %v", st.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".pid.*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
