package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/testutil"
)

// hostState lists what a restore may create on the host, by kind.
type hostState map[string][]string

// snapshotHost lists the host's network namespaces, links (of the host and
// of the given namespaces), mounts, cgroup directories, nftables tables,
// and the entries of /var/lib/crtool, /run/crtool and $TMPDIR.
func snapshotHost(t *testing.T, netns ...string) hostState {
	t.Helper()
	s := hostState{}
	s["netns"] = listTree(t, "/run/netns", false)
	s["links"] = linkNames(t, "")
	for _, ns := range netns {
		s["links in "+ns] = linkNames(t, ns)
	}
	s["mounts"] = mountPoints(t)
	var cg []string
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hierarchies {
		_ = filepath.WalkDir(h, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				cg = append(cg, p)
			}
			return nil
		})
	}
	sort.Strings(cg)
	s["cgroups"] = cg
	s["nftables"] = strings.Split(strings.TrimSpace(mustRun(t, "nft", "list", "tables")), "\n")
	s["/var/lib/crtool"] = listTree(t, "/var/lib/crtool", true)
	s["/run/crtool"] = listTree(t, "/run/crtool", true)
	// The go command's own build directories come and go meanwhile.
	for _, e := range listTree(t, os.TempDir(), false) {
		if !strings.HasPrefix(e, "go-build") {
			s["$TMPDIR"] = append(s["$TMPDIR"], e)
		}
	}
	return s
}

// diff describes how s differs from before, kind by kind.
func (s hostState) diff(before hostState) string {
	var b strings.Builder
	for kind, want := range before {
		have := map[string]bool{}
		for _, e := range s[kind] {
			have[e] = true
		}
		was := map[string]bool{}
		for _, e := range want {
			was[e] = true
			if !have[e] {
				fmt.Fprintf(&b, "%s: %s is gone\n", kind, e)
			}
		}
		for _, e := range s[kind] {
			if !was[e] {
				fmt.Fprintf(&b, "%s: %s was added\n", kind, e)
			}
		}
	}
	return b.String()
}

// listTree lists the entries below dir (only its own with deep false).
func listTree(t *testing.T, dir string, deep bool) []string {
	t.Helper()
	var out []string
	if !deep {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			out = append(out, p)
		}
		return nil
	})
	return out
}

var linkName = regexp.MustCompile(`^\d+: ([^:@ ]+)`)

// linkNames lists the links of the named namespace ("" for the host's).
func linkNames(t *testing.T, ns string) []string {
	t.Helper()
	args := []string{"-o", "link"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	var out []string
	for _, l := range strings.Split(mustRun(t, "ip", args...), "\n") {
		if m := linkName.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return out
}

func mountPoints(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			out = append(out, fields[4])
		}
	}
	sort.Strings(out)
	return out
}

// assertHostState fails when the host differs from before.
func assertHostState(t *testing.T, before hostState, netns ...string) {
	t.Helper()
	// The kernel removes a deleted namespace's links asynchronously.
	var d string
	deadline := time.Now().Add(10 * time.Second)
	for {
		if d = snapshotHost(t, netns...).diff(before); d == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host differs from before the restore:\n%s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// psEntry is one element of crtool ps --format json.
type psEntry struct {
	Name      string   `json:"name"`
	Status    string   `json:"status"`
	PID       int      `json:"pid"`
	Uptime    string   `json:"uptime"`
	Addresses []string `json:"addresses"`
	Archive   string   `json:"archive"`
}

// ps runs crtool ps --format json and returns the entry of name, if any.
func ps(t *testing.T, name string, all bool) (psEntry, bool) {
	t.Helper()
	args := []string{"ps", "--format", "json"}
	if all {
		args = append(args, "-a")
	}
	r := crtool(t, args...)
	if r.code != 0 {
		t.Fatalf("ps: %s", r)
	}
	var entries []psEntry
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatalf("ps --format json: %v: %s", err, r.stdout)
	}
	for _, e := range entries {
		if e.Name == name {
			return e, true
		}
	}
	return psEntry{}, false
}

// psTableLine is the line of name in crtool ps's table.
func psTableLine(t *testing.T, name string, all bool) string {
	t.Helper()
	args := []string{"ps"}
	if all {
		args = append(args, "-a")
	}
	r := crtool(t, args...)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "NAME") {
		t.Fatalf("ps: %s", r)
	}
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return l
		}
	}
	return ""
}

// rmLater removes a restored container when the test ends, whatever
// happened.
func rmLater(t *testing.T, name string) {
	t.Cleanup(func() { _ = exec.Command(env.crtool, "rm", "-f", "-t", "0", name).Run() })
}

// forgetOriginal stops a dumped test container the way a second host
// would not know it: its runc state and cgroups go, and its network
// namespace unless keepNetns.
func forgetOriginal(t *testing.T, c *container, l *lan, ns string) {
	t.Helper()
	mustRun(t, "ip", "netns", "del", ns)
	mustRun(t, env.runc, "--root", c.runcRoot, "delete", "-f", c.id)
	waitFor(t, 5*time.Second, "the cgroups to go", func() bool { return len(c.cgroupDirs()) == 0 })
	waitFor(t, 10*time.Second, "the container's veth to go with its namespace", func() bool {
		out, err := exec.Command("ip", "-n", l.hub, "-o", "link").Output()
		return err == nil && !strings.Contains(string(out), fmt.Sprintf("v%s2", l.id))
	})
}

// TestRmLeavesTheHostAsBeforeRestore restores a crtool archive into a
// rebuilt network namespace on a bridge crtool creates, and a Podman
// archive on an overlay; after crtool rm -f the host's listings equal
// those taken before the restore.
func TestRmLeavesTheHostAsBeforeRestore(t *testing.T) {
	t.Run("crtool", func(t *testing.T) {
		l := newLAN(t)
		ns := "crt-" + l.id
		l.attach(ns, 2, true)
		c := startContainer(t, containerSpec{args: []string{"/bin/sh", "-c", counterScript}, netnsPath: "/run/netns/" + ns})
		n := c.waitCount(10)
		archive := c.dump()
		forgetOriginal(t, c, l, ns)

		name := uniqueID("rm-")
		bridge := "b" + l.id
		before := snapshotHost(t, l.hub)
		rmLater(t, name)
		pid := c.restore(archive, "--name", name, "--bridge", bridge, "--create-bridge")
		c.waitCount(n)
		if !strings.Contains(strings.Join(linkNames(t, l.hub), " "), bridge) {
			t.Fatalf("restore did not create bridge %s", bridge)
		}

		t.Logf("the restore added:\n%s", snapshotHost(t, l.hub).diff(before))
		r := crtool(t, "rm", name)
		if r.code != 1 || !strings.Contains(r.stderr, "is running") || !strings.Contains(r.stderr, "rm -f") {
			t.Fatalf("rm of a running container without -f: %s", r)
		}
		if testutil.Exited(pid) {
			t.Fatal("a refused rm stopped the container")
		}
		if r := crtool(t, "rm", "-f", "-t", "1", name); r.code != 0 || strings.TrimSpace(r.stdout) != name {
			t.Fatalf("rm -f: %s", r)
		}
		if !testutil.Exited(pid) {
			t.Fatalf("pid %d survives rm -f", pid)
		}
		assertHostState(t, before, l.hub)
		// rm is idempotent with -f; without, it names the missing container.
		if r := crtool(t, "rm", "-f", name); r.code != 0 {
			t.Fatalf("second rm -f: %s", r)
		}
		if r := crtool(t, "rm", name); r.code != 1 || !strings.Contains(r.stderr, "no container named "+name) {
			t.Fatalf("rm of a removed container: %s", r)
		}
	})
	t.Run("podman", func(t *testing.T) {
		ref := testutil.RequireReference(t)
		root := imageRootfs(t)
		archive := filepath.Join(ref, "archives", "bbloop-portable-zstd.tar.zst")
		c := foreignContainer(t, archive)
		name := uniqueID("rmp-")
		mustRun(t, "ip", "netns", "add", name)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		before := snapshotHost(t)
		rmLater(t, name)
		pid := c.restore(archive, "--root", root, "--netns", "/run/netns/"+name, "--name", name)
		merged := filepath.Join("/var/lib/crtool/containers", name, "merged")
		waitFor(t, 10*time.Second, "the loop to count on", func() bool { return fileCounter(filepath.Join(merged, "tmp/counter")) > 0 })
		t.Logf("the restore added:\n%s", snapshotHost(t).diff(before))
		if r := crtool(t, "rm", "-f", "-t", "0", name); r.code != 0 {
			t.Fatalf("rm -f: %s", r)
		}
		if !testutil.Exited(pid) {
			t.Fatalf("pid %d survives rm -f", pid)
		}
		assertHostState(t, before)
		if _, err := os.Stat("/run/netns/" + name); err != nil {
			t.Fatalf("rm removed the --netns namespace it did not create: %v", err)
		}
	})
}

// TestPsShowsRunningThenExited: a restored container is listed as
// running with its PID and address, and after its init is killed as
// exited, only with -a, in the table and in JSON.
func TestPsShowsRunningThenExited(t *testing.T) {
	l := newLAN(t)
	ns := "crt-" + l.id
	l.attach(ns, 2, true)
	c := startContainer(t, containerSpec{args: []string{"/bin/sh", "-c", counterScript}, netnsPath: "/run/netns/" + ns})
	c.waitCount(10)
	archive := c.dump()
	forgetOriginal(t, c, l, ns)
	name := uniqueID("ps-")
	rmLater(t, name)
	pid := c.restore(archive, "--name", name)

	e, ok := ps(t, name, false)
	if !ok || e.Status != "running" || e.PID != pid || e.Uptime == "" || len(e.Addresses) == 0 || !strings.HasPrefix(e.Addresses[0], l.v4(2)+"/") || e.Archive != archive {
		t.Fatalf("ps --format json: %+v (listed %v), want running pid %d at %s from %s", e, ok, pid, l.v4(2), archive)
	}
	line := psTableLine(t, name, false)
	for _, want := range []string{"running", fmt.Sprint(pid), l.v4(2), archive} {
		if !strings.Contains(line, want) {
			t.Fatalf("ps line %q lacks %q", line, want)
		}
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the init to die", func() bool { return testutil.Exited(pid) })
	if _, ok := ps(t, name, false); ok {
		t.Fatal("ps without -a lists an exited container")
	}
	if line := psTableLine(t, name, false); line != "" {
		t.Fatalf("ps table without -a lists an exited container: %q", line)
	}
	if e, ok := ps(t, name, true); !ok || e.Status != "exited" {
		t.Fatalf("ps -a --format json: %+v (listed %v), want exited", e, ok)
	}
	if line := psTableLine(t, name, true); !strings.Contains(line, "exited") {
		t.Fatalf("ps -a line %q, want exited", line)
	}
	// An exited container needs no -f.
	if r := crtool(t, "rm", name); r.code != 0 {
		t.Fatalf("rm of an exited container: %s", r)
	}
	if _, ok := ps(t, name, true); ok {
		t.Fatal("ps -a lists a removed container")
	}
}

// resources counts what a restored container and crtool hold on the
// host; none of it may grow with the number of dump/restore rounds.
type resources struct {
	Fds, Procs, Netns, NsInodes, Mounts, Cgroups, Tables int
	RunCrtool, VarLibCrtool, TmpDir, Logs                int
}

// grown names the counts of now that exceed those of then.
func grown(then, now resources) string {
	var out []string
	a, b := reflect.ValueOf(then), reflect.ValueOf(now)
	for i := 0; i < a.NumField(); i++ {
		if b.Field(i).Int() > a.Field(i).Int() {
			out = append(out, a.Type().Field(i).Name)
		}
	}
	return strings.Join(out, ", ")
}

func countResources(t *testing.T, c *container, l *lan) resources {
	t.Helper()
	var r resources
	inodes := map[string]bool{}
	for _, p := range c.pids() {
		r.Procs++
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		r.Fds += len(fds)
		nss, _ := os.ReadDir(fmt.Sprintf("/proc/%d/ns", p))
		for _, ns := range nss {
			if target, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", p, ns.Name())); err == nil {
				inodes[target] = true
			}
		}
	}
	r.NsInodes = len(inodes)
	r.Netns = len(listTree(t, "/run/netns", false))
	r.Mounts = len(mountPoints(t))
	r.Cgroups = len(snapshotHost(t)["cgroups"])
	r.Tables = len(strings.Fields(mustRun(t, "ip", "netns", "exec", l.hub, "nft", "list", "tables"))) + len(strings.Fields(mustRun(t, "nft", "list", "tables")))
	r.RunCrtool = len(listTree(t, "/run/crtool", true))
	r.VarLibCrtool = len(listTree(t, "/var/lib/crtool", true))
	// Other programs use $TMPDIR too: count crtool's staging directories.
	for _, e := range listTree(t, os.TempDir(), false) {
		if strings.HasPrefix(e, "crtool-") {
			r.TmpDir++
		}
	}
	r.Logs = len(listTree(t, "/var/log/crtool", false))
	return r
}

// TestDumpRestoreCycles takes one container with a counter in memory and
// a busy TCP connection through 20 rounds of crtool dump NAME and crtool
// restore: the counter never goes back, the peer sees no reset and no
// lost byte, nothing the container or crtool holds grows, and after
// crtool rm the host is as before the first restore.
func TestDumpRestoreCycles(t *testing.T) {
	const rounds = 20
	l := newLAN(t)
	ns := "crt-" + l.id
	l.attach(ns, 2, true)
	c := startContainer(t, containerSpec{
		args:      []string{"/bin/sh", "-c", "nc -ll -p 5000 -e /bin/cat & " + counterScript},
		netnsPath: "/run/netns/" + ns,
	})
	l.attach("crp-"+l.id, 3, true)
	client := startEchoClient(t, "/run/netns/crp-"+l.id, "tcp4", net.JoinHostPort(l.v4(2), "5000"))
	client.waitEchoed(t, 20, 10*time.Second)
	last := c.waitCount(10)
	archive := c.dump("--tcp-established")
	forgetOriginal(t, c, l, ns)

	name := uniqueID("cyc-")
	before := snapshotHost(t, l.hub)
	rmLater(t, name)
	c.restore(archive, "--tcp-established", "--name", name)
	var first resources
	for round := 1; round <= rounds; round++ {
		v := c.waitCount(last)
		if v <= last {
			t.Fatalf("round %d: the counter went back from %d to %d", round, last, v)
		}
		last = v
		_, echoed, _ := client.state()
		client.waitEchoed(t, echoed+20, 30*time.Second)
		got := countResources(t, c, l)
		if round == 1 {
			first = got
		} else if g := grown(first, got); g != "" {
			t.Fatalf("round %d: %s grew: %+v, after the first restore %+v", round, g, got, first)
		}

		next := filepath.Join(c.dir, fmt.Sprintf("round-%d.tar.gz", round))
		if r := crtool(t, "dump", "-f", next, "--tcp-established", name); r.code != 0 {
			t.Fatalf("round %d: dump %s: %s", round, name, r)
		}
		if _, ok := ps(t, name, true); ok {
			t.Fatalf("round %d: the dumped container is still listed", round)
		}
		if err := os.Remove(archive); err != nil {
			t.Fatal(err)
		}
		archive = next
		c.restore(archive, "--tcp-established", "--name", name)
	}
	sent, echoed, err := client.state()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rounds: counter at %d, %d sent, %d echoed, resources %+v", rounds, last, sent, echoed, first)
	client.halt()
	if r := crtool(t, "rm", "-f", "-t", "1", name); r.code != 0 {
		t.Fatalf("rm -f: %s", r)
	}
	assertHostState(t, before, l.hub)
}

// TestFailuresLeaveOnlyTheLog: a restore and a dump that fail in CRIU
// leave the host as they found it but for CRIU's log in /var/log/crtool,
// which the error names.
func TestFailuresLeaveOnlyTheLog(t *testing.T) {
	c := newCounter(t)
	t.Run("restore", func(t *testing.T) {
		archive := c.dump("--leave-running")
		c.killAll()
		mustRun(t, env.runc, "--root", c.runcRoot, "delete", "-f", c.id)
		waitFor(t, 5*time.Second, "the cgroups to go", func() bool { return len(c.cgroupDirs()) == 0 })
		emptyRoot := t.TempDir()
		before := snapshotHost(t)
		// CRIU fails: the root has no busybox to map the process to.
		r := crtool(t, "restore", "-f", archive, "--root", emptyRoot, "--name", uniqueID("fail-"), "--allow-host-path", c.dir)
		if r.code != 1 || !strings.Contains(r.stderr, "criu restore failed") {
			t.Fatalf("restore into an empty root: %s", r)
		}
		keptLog(t, r.stderr)
		assertHostState(t, before)
	})
	t.Run("dump", func(t *testing.T) {
		c := newCounter(t)
		work := t.TempDir()
		killer := killerCriu(t, work)
		before := snapshotHost(t)
		before["work dir"] = nil
		r := crtool(t, "dump", "--pid", fmt.Sprint(c.pid), "-f", filepath.Join(c.dir, "x.tar.gz"), "--work-dir", work, "--criu", killer)
		if r.code != 1 || !strings.Contains(r.stderr, "criu dump failed") {
			t.Fatalf("dump with CRIU killed: %s", r)
		}
		keptLog(t, r.stderr)
		after := snapshotHost(t)
		after["work dir"] = listTree(t, work, true)
		if d := after.diff(before); d != "" {
			t.Fatalf("the host differs from before the dump:\n%s", d)
		}
	})
}

// TestMakeInstall installs into a DESTDIR: the binary, its manual page
// and the completion scripts, the last two generated by the binary.
func TestMakeInstall(t *testing.T) {
	requireEnv(t)
	dest := t.TempDir()
	cmd := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/usr/local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	prefix := filepath.Join(dest, "usr/local")
	bin := filepath.Join(prefix, "bin/crtool")
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "crtool ") || !strings.Contains(string(out), "CRIU 4.") {
		t.Fatalf("installed crtool version: %q, %v", out, err)
	}
	generated := map[string][]string{
		"share/man/man8/crtool.8":                     {"man"},
		"share/bash-completion/completions/crtool":    {"completion", "bash"},
		"share/zsh/vendor-completions/_crtool":        {"completion", "zsh"},
		"share/fish/vendor_completions.d/crtool.fish": {"completion", "fish"},
	}
	for file, args := range generated {
		installed, err := os.ReadFile(filepath.Join(prefix, file))
		if err != nil {
			t.Fatal(err)
		}
		want, err := exec.Command(bin, args...).Output()
		if err != nil || string(installed) != string(want) {
			t.Fatalf("%s is not what crtool %s prints (%v)", file, strings.Join(args, " "), err)
		}
	}
	man, _ := os.ReadFile(filepath.Join(prefix, "share/man/man8/crtool.8"))
	for _, want := range []string{".TH crtool 8", "restore", "rm", "ps", "--tcp-established"} {
		if !strings.Contains(string(man), want) {
			t.Fatalf("the manual page lacks %q", want)
		}
	}
	// The bash script completes commands through the installed binary.
	script := fmt.Sprintf(`PATH=%s:$PATH; source %s; COMP_WORDS=(crtool ve); COMP_CWORD=1; _crtool_complete; echo "${COMPREPLY[@]}"`,
		filepath.Dir(bin), filepath.Join(prefix, "share/bash-completion/completions/crtool"))
	if out, err := exec.Command("bash", "-c", script).Output(); err != nil || strings.TrimSpace(string(out)) != "version" {
		t.Fatalf("bash completion of 've': %q, %v", out, err)
	}
}
