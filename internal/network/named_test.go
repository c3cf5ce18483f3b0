package network

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
)

func TestCreateDeleteNamed(t *testing.T) {
	e := newEnv(t)
	name := e.id + "-n"
	path, err := CreateNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { DeleteNamed(name) })
	if path != filepath.Join(NamedDir, name) {
		t.Errorf("path = %q", path)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		t.Errorf("%s is not a namespace (statfs type %#x, %v)", path, st.Type, err)
	}
	// Another namespace, not ours.
	ns, _ := openNetns(path)
	host, _ := openNetns(format.HostNetns)
	if ns.Equal(host) {
		t.Errorf("the new namespace is crtool's own")
	}
	ns.Close()
	host.Close()
	// iproute2 sees it; `ip netns exec` needs nothing else.
	e.ip(name, "link", "show", "lo")
	if !sharedMount(t, NamedDir) {
		t.Errorf("%s is not a shared mount point", NamedDir)
	}
	if _, err := CreateNamed(name); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second CreateNamed = %v, want ErrExist", err)
	}

	if err := DeleteNamed(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there: %v", path, err)
	}
	if err := DeleteNamed(name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second DeleteNamed = %v, want ErrNotExist", err)
	}
}

func sharedMount(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == dir && strings.Contains(line, " shared:") {
			return true
		}
	}
	return false
}

func TestNamedInvalid(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b"} {
		if _, err := CreateNamed(name); err == nil {
			t.Errorf("CreateNamed(%q) succeeded", name)
		}
		if err := DeleteNamed(name); err == nil {
			t.Errorf("DeleteNamed(%q) succeeded", name)
		}
	}
}
