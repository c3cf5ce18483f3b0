package dump

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/criu"
)

// start runs cmd as a process of the test's own and kills it, by its pid,
// when the test ends.
func start(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// startTree starts a shell with one child of its own (sleep) and returns
// both pids.
func startTree(t *testing.T) (shell, child int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 60 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	shell = start(t, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if child, err = strconv.Atoi(strings.TrimSpace(line)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Kill(child, unix.SIGKILL) })
	// The shell reports its child once forked, maybe before the exec.
	for deadline := time.Now().Add(5 * time.Second); commOf(child) != "sleep"; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d is %q, not sleep", child, commOf(child))
		}
	}
	return shell, child
}

func TestInspectContainerRefuses(t *testing.T) {
	if _, err := inspectContainer(0, nil); !errors.Is(err, ErrNoProcess) {
		t.Fatalf("pid 0: %v", err)
	}
	if _, err := inspectContainer(1<<22+12345, nil); !errors.Is(err, ErrNoProcess) || !strings.Contains(err.Error(), "check the PID") {
		t.Fatalf("no such pid: %v", err)
	}
	// A process of the test is no container's init, whichever way the
	// host shows it: in the root cgroup, beside its parent, or in the
	// host's mount namespace.
	pid := start(t, exec.Command("sleep", "60"))
	if _, err := inspectContainer(pid, nil); !errors.Is(err, ErrNotContainerInit) || !strings.Contains(err.Error(), "(sleep)") {
		t.Fatalf("a process of the test: %v", err)
	}
}

func TestCheckInit(t *testing.T) {
	shell, child := startTree(t)
	st, err := readStatus(shell)
	if err != nil {
		t.Fatal(err)
	}
	if st["Name"] != "sh" || st["PPid"] != strconv.Itoa(os.Getpid()) {
		t.Fatalf("status of the shell: Name %q PPid %q", st["Name"], st["PPid"])
	}
	// First process of a PID namespace: accepted without looking further.
	if err := checkInit(shell, "sh", map[string]string{"NSpid": strconv.Itoa(shell) + "\t1"}, "/nonexistent"); err != nil {
		t.Fatalf("a PID namespace's init: %v", err)
	}
	// Another process of a PID namespace.
	err = checkInit(child, "sleep", map[string]string{"NSpid": strconv.Itoa(child) + "\t7"}, "/nonexistent")
	if !errors.Is(err, ErrNotContainerInit) || !strings.Contains(err.Error(), "it is pid 7 in its PID namespace") {
		t.Fatalf("pid 7 of a namespace: %v", err)
	}
	dir := "/sys/fs/cgroup/freezer/ctr"
	for _, tt := range []struct {
		name string
		pids []int
		want string // "" when accepted
	}{
		{"alone", []int{shell}, ""},
		{"with its child", []int{shell, child}, ""},
		{"beside its parent", []int{shell, os.Getpid()}, fmt.Sprintf("its parent pid %d", os.Getpid())},
		{"beside a stranger", []int{shell, 1}, "also holds pid 1 ("},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkCgroupTree(shell, "sh", st, dir, tt.pids)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("checkCgroupTree: %v", err)
			case tt.want != "" && (!errors.Is(err, ErrNotContainerInit) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("checkCgroupTree = %v, want %q", err, tt.want)
			}
		})
	}
	if !descends(child, shell) || descends(shell, child) || descends(child, 1<<22+12345) {
		t.Fatal("descends is wrong")
	}
	if commOf(child) != "sleep" || commOf(1<<22+12345) != "?" {
		t.Fatalf("commOf = %q", commOf(child))
	}
	if pidNamespaceInit(child) != 0 {
		t.Fatal("a process of the host's PID namespace has a namespace init")
	}
}

func TestNamespacesOfProcessOfTest(t *testing.T) {
	pid := start(t, exec.Command("sleep", "60"))
	nss, err := namespaces(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"net", "pid", "mnt", "ipc", "uts"} {
		ns, ok := nss[name]
		var own unix.Stat_t
		if err := unix.Stat("/proc/self/ns/"+name, &own); err != nil {
			t.Fatal(err)
		}
		if !ok || !ns.Shared || ns.Inode != own.Ino || ns.Path != "" {
			t.Errorf("namespace %s = %+v (present %v), want the test's own, inode %d", name, ns, ok, own.Ino)
		}
	}
	// A type /proc does not show is one the kernel lacks: left out.
	if nss, err := namespaces(1<<22 + 12345); err != nil || len(nss) != 0 {
		t.Fatalf("namespaces of no process = %v, %v", nss, err)
	}
}

// TestScanFds lists the descriptors of a process the test starts with
// stdio on /dev/null and a pipe, a log file, both ends of a pipe of its
// own and the log file twice.
func TestScanFds(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	innerR, innerW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	cmd.Stdout = outW
	cmd.ExtraFiles = []*os.File{logFile, innerR, innerW, logFile} // fds 3, 4, 5, 6
	pid := start(t, cmd)
	outW.Close()
	innerR.Close()
	innerW.Close()

	fds, err := scanFds([]int{pid, 1<<22 + 12345})
	if err != nil {
		t.Fatal(err)
	}
	byFd := map[int]fdInfo{}
	for _, f := range fds {
		if f.pid != pid {
			t.Fatalf("descriptor of pid %d listed", f.pid)
		}
		byFd[f.fd] = f
	}
	if byFd[0].target != os.DevNull || !strings.HasPrefix(byFd[1].target, "pipe:[") || byFd[3].target != logPath {
		t.Fatalf("descriptors %+v", byFd)
	}
	if byFd[1].flags&unix.O_ACCMODE != unix.O_WRONLY || byFd[3].flags&unix.O_APPEND == 0 || byFd[3].mntID == 0 {
		t.Fatalf("flags or mount of fd 1 %+v, fd 3 %+v", byFd[1], byFd[3])
	}
	if got := stdioOf(pid, fds); got[0] != os.DevNull || got[1] != byFd[1].target || got[2] != byFd[2].target {
		t.Fatalf("stdioOf = %q", got)
	}
	if got := stdioOf(pid+1, fds); got != [3]string{} {
		t.Fatalf("stdioOf another pid = %q", got)
	}

	// Nothing of the process is on a mount of the "container": every file
	// leads outside, and the pipe whose read end is the test's.
	ext, err := externalFiles(fds, realScope(t, fds, pid, map[int]bool{}))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var logEntry, pipeEntry *format.ExternalFile
	for i, e := range ext {
		keys = append(keys, e.Key)
		switch {
		case e.Path == logPath:
			logEntry = &ext[i]
		case e.Key == byFd[1].target:
			pipeEntry = &ext[i]
		case e.Key == byFd[4].target:
			t.Fatal("a pipe with both ends inside is external")
		}
	}
	if !slices.IsSorted(keys) {
		t.Fatalf("external files not sorted: %q", keys)
	}
	var st unix.Stat_t
	if err := unix.Stat(logPath, &st); err != nil {
		t.Fatal(err)
	}
	if logEntry == nil || logEntry.Kind != format.FileReg || logEntry.Key != fmt.Sprintf("file[%x:%x]", byFd[3].mntID, st.Ino) ||
		len(logEntry.Users) != 2 || logEntry.Users[0].Fd != 3 || logEntry.Users[1].Fd != 6 {
		t.Fatalf("log file entry %+v, want one file[MNT:INO] for fds 3 and 6", logEntry)
	}
	if pipeEntry == nil || pipeEntry.Kind != format.FilePipe || len(pipeEntry.Users) != 1 || pipeEntry.Users[0] != (format.FdRef{PID: pid, Fd: 1}) {
		t.Fatalf("stdout pipe entry %+v", pipeEntry)
	}
	// Files on the container's own mounts stay CRIU's business.
	inside := map[int]bool{}
	for _, f := range fds {
		inside[f.mntID] = true
	}
	ext, err = externalFiles(fds, realScope(t, fds, pid, inside))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ext {
		if e.Kind != format.FilePipe {
			t.Fatalf("file on a container mount listed: %+v", e)
		}
	}
}

func TestExternalFilesRefuses(t *testing.T) {
	dir := t.TempDir()
	gone, err := os.Create(filepath.Join(dir, "gone"))
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	if err := os.Remove(gone.Name()); err != nil {
		t.Fatal(err)
	}
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	for _, tt := range []struct {
		name string
		f    *os.File
		want string
	}{
		{"deleted file", gone, "a deleted file outside the container"},
		{"terminal", ptmx, "connected to the terminal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("sleep", "60")
			cmd.ExtraFiles = []*os.File{tt.f}
			pid := start(t, cmd)
			fds, err := openFds(pid)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := externalFiles(fds, realScope(t, fds, pid, map[int]bool{})); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "fd 3") {
				t.Fatalf("externalFiles = %v, want %q for fd 3", err, tt.want)
			}
		})
	}
}

func TestWriteDescriptors(t *testing.T) {
	dir := t.TempDir()
	if err := writeDescriptors(dir, [3]string{"/dev/null", "pipe:[1]", "pipe:[2]"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, format.DescriptorsFile))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := json.Unmarshal(b, &got); err != nil || !slices.Equal(got, []string{"/dev/null", "pipe:[1]", "pipe:[2]"}) {
		t.Fatalf("descriptors.json = %s, %v", b, err)
	}
	if err := writeDescriptors(filepath.Join(dir, "gone"), [3]string{}); err == nil {
		t.Fatal("descriptors.json into a missing directory")
	}
}

// runcContainer is what the dump sees of process pid when it runs in the
// runc container of the mount fixtures: its mounts, the external ones among
// them, and its namespaces.
func runcContainer(t *testing.T, pid int) (*mountTable, []format.ExternalMount, map[string]format.Namespace) {
	t.Helper()
	table, err := newMountTable(parseMounts(t, containerMounts))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := classifyMounts(table, parseMounts(t, hostMounts), func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	nss, err := namespaces(pid)
	if err != nil {
		t.Fatal(err)
	}
	return table, ext, nss
}

// TestSynthesizeSpec builds the spec of a process the test starts, with
// the mount table of a runc container.
func TestSynthesizeSpec(t *testing.T) {
	cwd := t.TempDir()
	cmd := exec.Command("sleep", "60")
	cmd.Dir = cwd
	cmd.Env = []string{"FOO=bar", "PATH=/usr/bin:/bin"}
	pid := start(t, cmd)
	table, ext, nss := runcContainer(t, pid)
	nss["net"] = format.Namespace{Inode: 4026532290, Path: "/run/netns/ctr"}
	c := &container{pid: pid, root: "/", namespaces: nss, cgroups: cgroups.Set{"freezer": "/crtexp/c1", "memory": "/crtexp/c1"}}
	s, b, err := specFor(c, table, ext)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Process
	if !slices.Equal(p.Args, []string{"sleep", "60"}) || !slices.Equal(p.Env, cmd.Env) || p.Cwd != cwd {
		t.Fatalf("process: args %q env %q cwd %q", p.Args, p.Env, p.Cwd)
	}
	if p.User.UID != uint32(os.Geteuid()) || p.User.GID != uint32(os.Getegid()) {
		t.Fatalf("user %+v", p.User)
	}
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(p.Rlimits, func(r specs.POSIXRlimit) bool { return r.Type == "RLIMIT_NOFILE" })
	if i < 0 || p.Rlimits[i].Soft != lim.Cur || p.Rlimits[i].Hard != lim.Max {
		t.Fatalf("rlimits %+v, want RLIMIT_NOFILE %d/%d", p.Rlimits, lim.Cur, lim.Max)
	}
	// Reading it takes joining the process's UTS namespace, which needs
	// root; without, the spec has none.
	want := ""
	if os.Geteuid() == 0 {
		want, _ = os.Hostname()
	}
	if s.Hostname != want {
		t.Fatalf("hostname %q, want %q", s.Hostname, want)
	}
	if s.Linux.CgroupsPath != "/crtexp/c1" || s.Annotations[managerAnnotation] != "libpod" || s.Root.Path != "/" {
		t.Fatalf("cgroups path %q, annotations %v, root %v", s.Linux.CgroupsPath, s.Annotations, s.Root)
	}
	// Only the namespace it does not share, with its persistent name.
	if len(s.Linux.Namespaces) != 1 || s.Linux.Namespaces[0].Type != "network" || s.Linux.Namespaces[0].Path != "/run/netns/ctr" {
		t.Fatalf("namespaces %+v", s.Linux.Namespaces)
	}
	if len(s.Mounts) != len(table.mounts)-1 {
		t.Fatalf("%d mounts, want every one but the root (%d)", len(s.Mounts), len(table.mounts)-1)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/data" && (m.Type != "bind" || m.Source != "/srv/data" || m.Options[0] != "rbind") {
			t.Fatalf("volume mount %+v, want an rbind of /srv/data", m)
		}
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil || back["ociVersion"] == nil {
		t.Fatalf("spec.dump is not the spec: %v", err)
	}
	if _, _, err := specFor(&container{pid: 1<<22 + 12345}, table, nil); err == nil {
		t.Fatal("spec of no process")
	}
}

func TestSpecFromBundle(t *testing.T) {
	bundle := t.TempDir()
	c := &container{pid: os.Getpid(), runtime: runtimeState{Name: "runc", Bundle: bundle}}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"ociVersion":"1.0.2","process":{"args":["httpd"]},"root":{"path":"rootfs"},"annotations":{"org.example":"x"}}`)
	s, b, err := specFor(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.Args[0] != "httpd" || s.Root.Path != "rootfs" {
		t.Fatalf("spec %+v", s)
	}
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Annotations[managerAnnotation] != "libpod" || m.Annotations["org.example"] != "x" {
		t.Fatalf("spec.dump annotations %v, %v", m.Annotations, err)
	}
	// A runtime's own manager annotation stays, and so does the file.
	own := `{"ociVersion":"1.0.2","annotations":{"io.container.manager":"cri-o"}}`
	write(own)
	if _, b, err := specFor(c, nil, nil); err != nil || string(b) != own {
		t.Fatalf("spec.dump = %s, %v, want config.json unchanged", b, err)
	}
	write(`{"ociVersion":`)
	if _, _, err := specFor(c, nil, nil); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("broken config.json: %v", err)
	}
}

func TestFindRuntime(t *testing.T) {
	runc, crun := t.TempDir(), t.TempDir()
	mk := func(dir, name, file, content string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, file), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mk(runc, "other", "state.json", `{"id":"other","init_process_pid":1}`)
	mk(runc, "broken", "state.json", `{"id":`)
	mk(runc, "web", "state.json", `{"id":"web","init_process_pid":4242,"config":{"labels":["bundle=/srv/web"]}}`)
	mk(crun, "db", "status", `{"pid":5151,"bundle":"/srv/db"}`)
	roots := []string{filepath.Join(t.TempDir(), "gone"), runc, crun}
	if got := findRuntime(4242, roots); got != (runtimeState{Name: "runc", ID: "web", Bundle: "/srv/web"}) {
		t.Fatalf("runc container: %+v", got)
	}
	if got := findRuntime(5151, roots); got != (runtimeState{Name: "crun", ID: "db", Bundle: "/srv/db"}) {
		t.Fatalf("crun container: %+v", got)
	}
	if got := findRuntime(6000, roots); got != (runtimeState{}) {
		t.Fatalf("unknown container: %+v", got)
	}
}

func TestContainerIdentity(t *testing.T) {
	long := strings.Repeat("0123456789abcdef", 4)
	pid := start(t, exec.Command("sleep", "60"))
	for _, tt := range []struct {
		name             string
		c                container
		flag             string
		wantID, wantName string
	}{
		{"runtime's full ID", container{pid: pid, runtime: runtimeState{ID: long}}, "", long, long},
		{"--name", container{pid: pid, runtime: runtimeState{ID: long}}, "web", long, "web"},
		{"short runtime ID", container{pid: pid, runtime: runtimeState{ID: "web1"}}, "", "", "web1"},
		{"v1 cgroup", container{pid: pid, cgroups: cgroups.Set{"freezer": "/crtool/c7", cgroups.Unified: "/"}}, "", "", "c7"},
		{"v2 cgroup", container{pid: pid, cgroups: cgroups.Set{cgroups.Unified: "/machine.slice/c8.scope"}}, "", "", "c8.scope"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, name := containerIdentity(&tt.c, tt.flag, "host1")
			if name != tt.wantName {
				t.Fatalf("name = %q, want %q", name, tt.wantName)
			}
			if tt.wantID != "" && id != tt.wantID {
				t.Fatalf("id = %q, want %q", id, tt.wantID)
			}
			// A derived ID is a full one, the same for the same process.
			again, _ := containerIdentity(&tt.c, tt.flag, "host1")
			other, _ := containerIdentity(&tt.c, tt.flag, "host2")
			if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" || again != id || (tt.wantID == "" && other == id) {
				t.Fatalf("id %q (again %q, other host %q)", id, again, other)
			}
		})
	}
}

func TestProcessStart(t *testing.T) {
	before := time.Now().Truncate(time.Second).Add(-2 * time.Second)
	pid := start(t, exec.Command("sleep", "60"))
	got := processStart(pid)
	if got.Before(before) || got.After(time.Now().Add(time.Second)) {
		t.Fatalf("processStart = %v, want about %v", got, before)
	}
	if again := processStart(pid); !again.Equal(got) {
		t.Fatalf("processStart changed from %v to %v", got, again)
	}
	c := &container{pid: pid}
	if id := lockID(c); id != fmt.Sprintf("%d-%d", pid, got.Unix()) {
		t.Fatalf("lockID = %q", id)
	}
	if criu.KernelRelease() == "" {
		t.Fatal("kernelRelease is empty")
	}
}
