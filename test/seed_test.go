package test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crtool/crtool/format"
)

// counterPage serves /www with httpd and counts in the shell's memory,
// publishing the count as /www/counter.txt and writing it to the volume
// at /data when there is one.
const counterPage = `httpd -p 8080 -h /www; i=0; while :; do i=$((i+1)); echo $i > /www/counter.txt; [ -d /data ] && echo $i > /data/count; busybox usleep 20000; done`

// seedContainer is a container Podman runs on a network of the test's own
// with a published port, and a volume when volume is set.
type seedContainer struct {
	name, id, pid string
	base          string // http://127.0.0.1:PORT
	port          int
	volume        string // host directory bound at /data, "" for none
	bridge        string // the Podman network's bridge
}

// runSeedContainer starts the container and registers the removal of
// what restoring it as restored leaves behind.
func runSeedContainer(t *testing.T, restored, script string, volume bool, runArgs ...string) *seedContainer {
	t.Helper()
	requirePodman(t)
	loadBusyboxImage(t)
	netName, subnet := podmanNetwork(t)
	c := &seedContainer{name: uniqueID("crtseed-"), port: freePort(t)}
	c.base = fmt.Sprintf("http://127.0.0.1:%d", c.port)
	t.Cleanup(func() { _ = exec.Command("podman", "rm", "-f", "-t", "0", c.name).Run() })
	args := []string{"run", "-d", "--name", c.name, "--network", netName, "-p", fmt.Sprintf("%d:8080", c.port)}
	if volume {
		c.volume = t.TempDir()
		args = append(args, "-v", c.volume+":/data")
	}
	args = append(append(args, runArgs...), busyboxImage, "sh", "-c", script)
	podman(t, args...)
	podman(t, "exec", c.name, "sh", "-c", "echo made at run time > /www/page.html")
	c.id = strings.TrimSpace(podman(t, "inspect", "--format", "{{.Id}}", c.name))
	c.pid = strings.TrimSpace(podman(t, "inspect", "--format", "{{.State.Pid}}", c.name))
	c.bridge = strings.TrimSpace(podman(t, "network", "inspect", "--format", "{{.NetworkInterface}}", netName))
	cleanupRestored(t, restored, c.id, c.bridge, subnet+".1/24")
	waitFor(t, 10*time.Second, "the published counter", func() bool { return published(c.base) > 10 })
	return c
}

// dumpAndRemove checkpoints the container with crtool (extra options
// added), removes it from Podman and returns the archive and the counter
// just before the dump.
func (c *seedContainer) dumpAndRemove(t *testing.T, extra ...string) (string, int) {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "web.tar.gz")
	atDump := published(c.base)
	start := time.Now()
	if r := crtool(t, append([]string{"dump", "--pid", c.pid, "-f", archive}, extra...)...); r.code != 0 {
		t.Fatalf("dump: %s", r)
	}
	t.Logf("dump took %v", time.Since(start).Round(time.Millisecond))
	podman(t, "rm", "-f", "-t", "0", c.name)
	if _, err := get(c.base + "/page.html"); err == nil {
		t.Fatal("the port still answers after podman rm: the test proves nothing")
	}
	return archive, atDump
}

// TestSeedScenario is the scenario crtool was made for: a container Podman
// started with a published port is checkpointed by crtool, removed from
// Podman, and restored by crtool under a new name with no other option;
// the port answers again on 127.0.0.1 with the page written at run time,
// and the counter kept in memory continues.
func TestSeedScenario(t *testing.T) {
	restored := uniqueID("crtseed-r-")
	c := runSeedContainer(t, restored, counterPage, false)
	archive, atDump := c.dumpAndRemove(t)

	// A host port in use stops the restore before anything is made, and
	// the error names the flag that maps the port elsewhere.
	l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", c.port))
	if err != nil {
		t.Fatal(err)
	}
	r := crtool(t, "restore", "-f", archive, "--name", restored, "--work-dir", t.TempDir())
	l.Close()
	if r.code == 0 || !strings.Contains(r.stderr, "in use") || !strings.Contains(r.stderr, "--publish") {
		t.Fatalf("restore with the host port taken: %s", r)
	}
	assertNoRestoreState(t, restored)

	// A restore that fails late, in CRIU, after the root filesystem, the
	// private mounts, the bridge, the namespace and the ports were made,
	// takes all of them away again (its work directory keeps CRIU's log).
	r = crtool(t, "restore", "-f", brokenArchive(t, archive, "checkpoint/mm-1.img"), "--name", restored, "--work-dir", t.TempDir())
	if r.code == 0 {
		t.Fatalf("restore without mm-1.img succeeded: %s", r)
	}
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.Contains(line, "warning:") && !strings.Contains(line, "was missing: created it") {
			t.Errorf("the rollback of the failed restore reports: %s", line)
		}
	}
	assertNoRestoreState(t, restored)
	if exec.Command("ip", "link", "show", c.bridge).Run() == nil {
		t.Errorf("the failed restore left bridge %s", c.bridge)
	}

	start := time.Now()
	if r = crtool(t, "restore", "-f", archive, "--name", restored); r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	restoreTook := time.Since(start)
	page, err := get(c.base + "/page.html")
	if err != nil || strings.TrimSpace(page) != "made at run time" {
		t.Fatalf("GET /page.html after the restore: %q, %v", page, err)
	}
	first := published(c.base)
	if first < atDump {
		t.Fatalf("counter %d after the restore, %d before the dump: it started over", first, atDump)
	}
	waitFor(t, 10*time.Second, "the counter to continue", func() bool { return published(c.base) > first })
	t.Logf("seed scenario: counter %d at the dump, %d after the restore, which took %v", atDump, first, restoreTook.Round(time.Millisecond))

	// crtool rm takes it all away: ports, overlay, image mount, state
	// directory, namespace.
	if r := crtool(t, "rm", "-f", "-t", "0", restored); r.code != 0 {
		t.Fatalf("rm: %s", r)
	}
	assertNoRestoreState(t, restored)
	if _, err := get(c.base + "/page.html"); err == nil {
		t.Fatal("the port still answers after crtool rm")
	}
	if mounted := podman(t, "image", "mount"); strings.Contains(mounted, "crtest-busybox") {
		t.Errorf("the image stays mounted after crtool rm:\n%s", mounted)
	}
}

// TestSeedRestoreListsMissing: a restore on a host that lacks the image,
// the volume, the bridge and the host port reports all four in one run,
// each with its fix, and makes nothing.
func TestSeedRestoreListsMissing(t *testing.T) {
	restored := uniqueID("crtseed-m-")
	c := runSeedContainer(t, restored, counterPage, true)
	// An image this host does not have, as on a host without it.
	archive, _ := c.dumpAndRemove(t, "--image", "localhost/crtest-absent:latest", "--image-id", strings.Repeat("ab", 32))
	if err := os.RemoveAll(c.volume); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", c.port))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The operator allows the volume, which is gone: a missing piece, not
	// a refusal.
	r := crtool(t, "restore", "-f", archive, "--name", restored, "--bridge", uniqueID("crtnb"), "--allow-host-path", c.volume, "--work-dir", t.TempDir())
	if r.code == 0 {
		t.Fatalf("restore succeeded on a host that lacks its pieces: %s", r)
	}
	for _, want := range []string{"podman pull localhost/crtest-absent:latest", "--root DIR", "volume /data", c.volume, "--create-bridge", "in use", "--publish"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the restore's errors lack %q:\n%s", want, r.stderr)
		}
	}
	assertNoRestoreState(t, restored)
}

// freePort finds a TCP port free on this host.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// get fetches url from the host.
func get(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return string(b), err
}

// published reads the counter behind base, 0 when it does not answer.
// The shell truncates the file before it writes the next count: an empty
// read is retried.
func published(base string) int {
	for i := 0; i < 50; i++ {
		s, err := get(base + "/counter.txt")
		if err != nil {
			return 0
		}
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

// cleanupRestored removes what restoring the Podman container id as name
// leaves on the host: its processes and cgroups, network namespace,
// published ports, state directory with the overlay and the image mount,
// and the bridge crtool recreated (recognised by the test network's
// gateway address).
func cleanupRestored(t *testing.T, name, id, bridge, gateway string) {
	c := &container{t: t, id: name, cgroupPath: "/libpod_parent/libpod-" + id}
	t.Cleanup(func() {
		_ = exec.Command(env.crtool, "rm", "-f", "-t", "0", name).Run()
		c.killAll()
		for _, d := range c.cgroupDirs() {
			_ = os.Remove(d)
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
		_ = exec.Command("nft", "delete", "table", "inet", "crtool-ports-"+name).Run()
		dir := filepath.Join("/var/lib/crtool/containers", name)
		_ = exec.Command("umount", filepath.Join(dir, "merged")).Run()
		if img, err := os.ReadFile(filepath.Join(dir, "podman-image")); err == nil {
			_ = exec.Command("podman", "image", "unmount", strings.TrimSpace(string(img))).Run()
		}
		_ = os.RemoveAll(dir)
		if out, err := exec.Command("ip", "-br", "addr", "show", "dev", bridge).Output(); err == nil && strings.Contains(string(out), gateway) {
			_ = exec.Command("ip", "link", "del", bridge).Run()
		}
	})
}

// assertNoRestoreState checks that a failed restore under name left
// nothing behind.
func assertNoRestoreState(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("/var/lib/crtool/containers", name)); err == nil {
		t.Errorf("the failed restore left /var/lib/crtool/containers/%s", name)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
		t.Errorf("the failed restore left /run/netns/%s", name)
	}
	if exec.Command("nft", "list", "table", "inet", "crtool-ports-"+name).Run() == nil {
		t.Errorf("the failed restore left nftables table inet crtool-ports-%s", name)
	}
}

// TestSeedWithRootfs: an archive dumped with --with-rootfs restores on a
// host whose Podman storage lacks the container's image, without --root:
// it carries the whole root filesystem. Its volume is mapped elsewhere
// with --volume.
func TestSeedWithRootfs(t *testing.T) {
	restored := uniqueID("crtseed-w-")
	c := runSeedContainer(t, restored, counterPage, true)
	archive, atDump := c.dumpAndRemove(t, "--with-rootfs", "--image", "localhost/crtest-absent:latest", "--image-id", strings.Repeat("cd", 32))
	if members := mustRun(t, "tar", "-tzf", archive); !strings.Contains(members, "rootfs.tar\n") {
		t.Fatalf("--with-rootfs archive lacks rootfs.tar:\n%s", members)
	}
	// Another container took the host end's name meanwhile (netavark
	// numbers them): the restore names its own anew.
	takeHostEnd(t, archive)
	// The volume moves too, to a directory of its own on this host.
	moved := t.TempDir()
	if r := crtool(t, "restore", "-f", archive, "--name", restored, "--volume", moved+":/data"); r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	waitFor(t, 10*time.Second, "the counter to reach the moved volume", func() bool { return fileCounter(filepath.Join(moved, "count")) >= atDump })
	if page, err := get(c.base + "/page.html"); err != nil || strings.TrimSpace(page) != "made at run time" {
		t.Fatalf("GET /page.html after the restore: %q, %v", page, err)
	}
	if n := published(c.base); n < atDump {
		t.Fatalf("counter %d after the restore, %d before the dump: it started over", n, atDump)
	}
	if _, err := os.Stat(filepath.Join("/var/lib/crtool/containers", restored, "podman-image")); err == nil {
		t.Fatal("the restore mounted an image: it should have used the archive's root filesystem")
	}
}

// lineCounter answers each line of a connection to port 9000 with the
// number of lines it has had so far: state of the connection's own.
const lineCounter = `printf 'n=0; while read l; do n=$((n+1)); echo "$n $l"; done' > /tmp/lines.sh; nc -ll -p 9000 -e /bin/sh /tmp/lines.sh & ` + counterPage

// TestSeedTCPEstablished: the seed scenario with an established
// connection opened through a second published port before the dump; with
// --tcp-established on both sides the same connection carries on after
// the restore, its server-side state intact.
func TestSeedTCPEstablished(t *testing.T) {
	restored := uniqueID("crtseed-t-")
	connPort := freePort(t)
	c := runSeedContainer(t, restored, lineCounter, false, "-p", fmt.Sprintf("%d:9000", connPort))
	conn, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", connPort), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	exchange := func(line, want string) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintln(conn, line); err != nil {
			t.Fatalf("send %q: %v", line, err)
		}
		got, err := rd.ReadString('\n')
		if err != nil || strings.TrimSpace(got) != want {
			t.Fatalf("sent %q, got %q, %v; want %q", line, got, err, want)
		}
	}
	exchange("before", "1 before")
	archive, atDump := c.dumpAndRemove(t, "--tcp-established")
	if r := crtool(t, "restore", "-f", archive, "--name", restored, "--tcp-established"); r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	exchange("after", "2 after")
	if n := published(c.base); n < atDump {
		t.Fatalf("counter %d after the restore, %d before the dump: it started over", n, atDump)
	}
}

// brokenArchive is a copy of archive without member.
func brokenArchive(t *testing.T, archive, member string) string {
	t.Helper()
	dir := t.TempDir()
	mustRun(t, "tar", "-C", dir, "-xzf", archive)
	if err := os.Remove(filepath.Join(dir, member)); err != nil {
		t.Fatal(err)
	}
	// The manifest would refuse it before CRIU sees it; an archive
	// without one restores as another engine's does.
	if err := os.Remove(filepath.Join(dir, format.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "broken.tar.gz")
	mustRun(t, "tar", "-C", dir, "-czf", out, ".")
	return out
}

// takeHostEnd creates a link under the name the archive records for the
// host end of the container's veth, unless one exists already.
func takeHostEnd(t *testing.T, archive string) {
	t.Helper()
	var md format.Metadata
	if err := json.Unmarshal([]byte(mustRun(t, "tar", "-xzOf", archive, format.MetadataFile)), &md); err != nil {
		t.Fatal(err)
	}
	eth0 := md.Network.LinkByName("eth0")
	if eth0 == nil || eth0.Peer == nil || eth0.Peer.Name == "" {
		t.Fatalf("the archive records no host end of eth0: %+v", eth0)
	}
	name := eth0.Peer.Name
	if exec.Command("ip", "link", "add", name, "type", "bridge").Run() == nil {
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name, "type", "bridge").Run() })
	}
	if exec.Command("ip", "link", "show", name).Run() != nil {
		t.Fatalf("no link %s on the host", name)
	}
}

// TestSeedExportedVolume: with dump --export-volumes the archive carries
// the volume's content, so the container restores after its source
// directory was deleted, its volume recreated under its state directory,
// where it goes on writing.
func TestSeedExportedVolume(t *testing.T) {
	restored := uniqueID("crtseed-v-")
	c := runSeedContainer(t, restored, counterPage, true)
	archive, atDump := c.dumpAndRemove(t, "--export-volumes")
	if err := os.RemoveAll(c.volume); err != nil {
		t.Fatal(err)
	}
	if r := crtool(t, "restore", "-f", archive, "--name", restored); r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	recreated := filepath.Join("/var/lib/crtool/containers", restored, "mounts", "data", "count")
	waitFor(t, 10*time.Second, "the counter in the recreated volume", func() bool { return fileCounter(recreated) > atDump })
	if _, err := os.Stat(c.volume); err == nil {
		t.Fatalf("the restore recreated %s on the host: it is the state directory's to hold", c.volume)
	}
}
