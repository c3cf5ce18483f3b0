package dump

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/testutil"
)

func TestExternalFiles(t *testing.T) {
	// A real host file, since external files are stat'ed through /proc.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "container.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	self := os.Getpid()
	const hostMnt, ctrMnt, shmMnt = 21, 68, 9
	scope := fdScope{
		containerMounts: map[int]bool{ctrMnt: true},
		hostMounts:      map[int]bool{hostMnt: true},
		pipesOutside:    map[string]bool{"pipe:[100]": true},
	}
	for _, tc := range []struct {
		name    string
		fds     []fdInfo
		want    []string // keys of the external files
		wantErr error
	}{
		{"supervisor pipe", []fdInfo{{pid: 1, fd: 1, target: "pipe:[100]", flags: unix.O_WRONLY}}, []string{"pipe:[100]"}, nil},
		// The read end travels in an SCM_RIGHTS message: no process
		// holds it, and the pipe is the container's own.
		{"pipe in flight", []fdInfo{{pid: 1, fd: 4, target: "pipe:[200]", flags: unix.O_WRONLY}}, nil, nil},
		{"pipe inside", []fdInfo{
			{pid: 1, fd: 3, target: "pipe:[300]", flags: unix.O_RDONLY},
			{pid: 2, fd: 4, target: "pipe:[300]", flags: unix.O_WRONLY},
		}, nil, nil},
		{"memfd", []fdInfo{{pid: 1, fd: 4, target: "/memfd:somename (deleted)", mntID: shmMnt, fsType: unix.TMPFS_MAGIC}}, nil, nil},
		{"shared anonymous memory", []fdInfo{{pid: 1, fd: 5, target: "/dev/zero (deleted)", mntID: shmMnt, fsType: unix.TMPFS_MAGIC}}, nil, nil},
		{"file inside", []fdInfo{{pid: 1, fd: 3, target: "/data/x", mntID: ctrMnt, fsType: unix.EXT4_SUPER_MAGIC}}, nil, nil},
		{"host log file", []fdInfo{{pid: self, fd: int(logFile.Fd()), target: logFile.Name(), mntID: hostMnt, fsType: unix.EXT4_SUPER_MAGIC}},
			[]string{"file["}, nil},
		{"deleted host file", []fdInfo{{pid: 1, fd: 3, target: "/var/log/x (deleted)", mntID: hostMnt, fsType: unix.EXT4_SUPER_MAGIC}}, nil, ErrUnsupported},
		// A host tmpfs is the host's, not the kernel's internal one.
		{"deleted file on a host tmpfs", []fdInfo{{pid: 1, fd: 3, target: "/run/x (deleted)", mntID: hostMnt, fsType: unix.TMPFS_MAGIC}}, nil, ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := externalFiles(tc.fds, scope)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("external files %+v, want keys %v", got, tc.want)
			}
			for i, f := range got {
				if !strings.HasPrefix(f.Key, tc.want[i]) {
					t.Fatalf("external file %d: key %s, want %s", i, f.Key, tc.want[i])
				}
				if f.Kind == format.FileReg && f.Path != logFile.Name() {
					t.Fatalf("external file path %s, want %s", f.Path, logFile.Name())
				}
			}
		})
	}
}

// TestMemfdIsInternal checks on a real memfd that it lies on a mount the
// host does not show, on tmpfs, as externalFiles expects.
func TestMemfdIsInternal(t *testing.T) {
	fd, err := unix.MemfdCreate("crtool-test", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	fds, err := openFds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	host, err := mountIDsOf([]int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fds {
		if f.fd == fd {
			if !internalMount(f, host) {
				t.Fatalf("memfd %+v not taken for the kernel's internal mount", f)
			}
			return
		}
	}
	t.Fatalf("memfd %d not among the descriptors", fd)
}

// TestMountIDsOf checks that a mount namespace a process made itself
// counts: a file there is the container's.
func TestMountIDsOf(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		fmt.Sprintf("mount -t tmpfs crtool-test %s && echo ready && exec sleep 30", dir))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("unshare: %q %v", buf, err)
	}
	ms, err := mountinfo.PidMountInfo(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	id := -1
	for _, m := range ms {
		if m.Mountpoint == dir {
			id = m.ID
		}
	}
	if id < 0 {
		t.Fatalf("no mount at %s in the new namespace", dir)
	}
	self := os.Getpid()
	if ids, err := mountIDsOf([]int{self}); err != nil || ids[id] {
		t.Fatalf("mount %d among the host's: %v", id, err)
	}
	if ids, err := mountIDsOf([]int{self, cmd.Process.Pid}); err != nil || !ids[id] {
		t.Fatalf("mount %d of the second namespace missing: %v", id, err)
	}
}

func TestPipesHeldOutside(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	pipes := map[string]bool{target: true, "pipe:[1]": true}
	held, err := pipesHeldOutside(pipes, map[int]bool{})
	if err != nil || !held[target] || held["pipe:[1]"] {
		t.Fatalf("held = %v, %v; want only %s", held, err, target)
	}
	// This process is the only holder: seen from inside, nobody else is.
	held, err = pipesHeldOutside(pipes, map[int]bool{os.Getpid(): true})
	if err != nil || len(held) != 0 {
		t.Fatalf("held = %v, %v; want none", held, err)
	}
}

// realScope is the scope of fds, the descriptors of pid, a process this
// test started: only pid is inside the "container", whose mounts are
// containerMounts; the host's mounts and pipes are the real ones.
func realScope(t *testing.T, fds []fdInfo, pid int, containerMounts map[int]bool) fdScope {
	t.Helper()
	host, err := mountIDsOf([]int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	pipes := map[string]bool{}
	for _, f := range fds {
		if strings.HasPrefix(f.target, "pipe:[") {
			pipes[f.target] = true
		}
	}
	outside, err := pipesHeldOutside(pipes, map[int]bool{pid: true})
	if err != nil {
		t.Fatal(err)
	}
	return fdScope{containerMounts: containerMounts, hostMounts: host, pipesOutside: outside}
}
