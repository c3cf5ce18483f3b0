package test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lan is a test network: a bridge inside a "hub" namespace of its own (so
// the host's namespace is never touched), with namespaces attached to it by
// veth pairs. Addresses come from 10.201.N.0/24 and fd00:c7:N::/64, where N
// is random per test.
type lan struct {
	t      *testing.T
	id     string
	hub    string // namespace name
	bridge string
	n      int
}

func newLAN(t *testing.T) *lan {
	t.Helper()
	requireEnv(t)
	id := uniqueID("")
	l := &lan{t: t, id: id, hub: "crh-" + id, bridge: "br0"}
	fmt.Sscanf(id[:2], "%x", &l.n)
	l.n = l.n%200 + 20
	mustRun(t, "ip", "netns", "add", l.hub)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.hub).Run() })
	mustRun(t, "ip", "-n", l.hub, "link", "add", l.bridge, "type", "bridge")
	mustRun(t, "ip", "-n", l.hub, "link", "set", l.bridge, "up")
	return l
}

func (l *lan) v4(host int) string { return fmt.Sprintf("10.201.%d.%d", l.n, host) }
func (l *lan) v6(host int) string { return fmt.Sprintf("fd00:c7:%d::%d", l.n, host) }

// attach creates the named namespace if needed and plugs it into the bridge
// with a veth whose inner end is eth0, carrying address number host.
func (l *lan) attach(ns string, host int, create bool) {
	l.t.Helper()
	if create {
		mustRun(l.t, "ip", "netns", "add", ns)
		l.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	outer := fmt.Sprintf("v%s%d", l.id, host)
	mustRun(l.t, "ip", "-n", l.hub, "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
	mustRun(l.t, "ip", "-n", l.hub, "link", "set", outer, "master", l.bridge, "up")
	mustRun(l.t, "ip", "-n", ns, "link", "set", "lo", "up")
	mustRun(l.t, "ip", "-n", ns, "addr", "add", l.v4(host)+"/24", "dev", "eth0")
	mustRun(l.t, "ip", "-n", ns, "addr", "add", l.v6(host)+"/64", "dev", "eth0", "nodad")
	mustRun(l.t, "ip", "-n", ns, "link", "set", "eth0", "up")
}

// echoClient keeps one TCP connection to an echo server and sends numbered
// messages over it, checking that every echo comes back exactly once and in
// order.
type echoClient struct {
	conn   net.Conn
	mu     sync.Mutex
	sent   int
	echoed int
	err    error
	stop   chan struct{}
	done   sync.WaitGroup
}

func startEchoClient(t *testing.T, nsPath, network, addr string) *echoClient {
	t.Helper()
	var conn net.Conn
	var err error
	for i := 0; i < 100; i++ {
		if conn, err = dialIn(nsPath, network, addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	c := &echoClient{conn: conn, stop: make(chan struct{})}
	t.Cleanup(func() { c.halt(); conn.Close() })
	c.done.Add(2)
	go c.send()
	go c.receive()
	return c
}

func (c *echoClient) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (c *echoClient) send() {
	defer c.done.Done()
	for i := 1; ; i++ {
		select {
		case <-c.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
		// The write itself must never fail: a reset would show here.
		if _, err := fmt.Fprintf(c.conn, "msg %d\n", i); err != nil {
			c.fail(fmt.Errorf("send msg %d: %w", i, err))
			return
		}
		c.mu.Lock()
		c.sent = i
		c.mu.Unlock()
	}
}

func (c *echoClient) receive() {
	defer c.done.Done()
	r := bufio.NewReader(c.conn)
	for want := 1; ; want++ {
		line, err := r.ReadString('\n')
		if err != nil {
			select {
			case <-c.stop:
			default:
				c.fail(fmt.Errorf("read echo %d: %w", want, err))
			}
			return
		}
		if got := strings.TrimSpace(line); got != fmt.Sprintf("msg %d", want) {
			c.fail(fmt.Errorf("echo %d is %q: lost, duplicated or reordered bytes", want, got))
			return
		}
		c.mu.Lock()
		c.echoed = want
		c.mu.Unlock()
	}
}

func (c *echoClient) state() (sent, echoed int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent, c.echoed, c.err
}

// waitEchoed waits until n messages came back, failing on any error.
func (c *echoClient) waitEchoed(t *testing.T, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		sent, echoed, err := c.state()
		if err != nil {
			t.Fatalf("client: %v (sent %d, echoed %d)", err, sent, echoed)
		}
		if echoed >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d echoes after %v (sent %d)", echoed, n, d, sent)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *echoClient) halt() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
		c.conn.SetDeadline(time.Now())
	}
	c.done.Wait()
}

// echoServer is a container running busybox nc as a persistent TCP echo
// server on port 5000, attached to the LAN as host 2.
func echoServer(t *testing.T, l *lan) *container {
	t.Helper()
	ns := "crt-" + l.id
	l.attach(ns, 2, true)
	return startContainer(t, containerSpec{
		args:      []string{"/bin/nc", "-ll", "-p", "5000", "-e", "/bin/cat"},
		netnsPath: "/run/netns/" + ns,
	})
}

// echoSetup starts an echo server container (host 2) and a client in a peer
// namespace (host 3) holding a busy connection to it.
func echoSetup(t *testing.T, family string) (*lan, *container, *echoClient) {
	t.Helper()
	l := newLAN(t)
	c := echoServer(t, l)
	l.attach("crp-"+l.id, 3, true)
	addr := net.JoinHostPort(l.v4(2), "5000")
	if family == "tcp6" {
		addr = net.JoinHostPort(l.v6(2), "5000")
	}
	client := startEchoClient(t, "/run/netns/crp-"+l.id, family, addr)
	client.waitEchoed(t, 50, 10*time.Second)
	return l, c, client
}

// TestMigrationToFreshHost dumps a container while a peer's connection is
// busy, then deletes everything the host knew of it — its network
// namespace and veth, its cgroup — and moves its root filesystem, so that
// the restore rebuilds it from the archive alone. The peer, using the same
// socket throughout, must see no reset and every echo exactly once.
func TestMigrationToFreshHost(t *testing.T) {
	for _, family := range []string{"tcp4", "tcp6"} {
		t.Run(family, func(t *testing.T) {
			l, c, client := echoSetup(t, family)
			archive := c.dump("--tcp-established")
			_, before, _ := client.state()

			newRoot := c.secondHost(t, l, false)
			c.restore(archive, "--tcp-established", "--root", newRoot)
			client.waitEchoed(t, before+100, 30*time.Second)
			sent, echoed, err := client.state()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d sent, %d echoed, %d across the migration", family, sent, echoed, echoed-before)
			if locks := mustRun(t, "ip", "netns", "exec", "crt-"+l.id, "nft", "list", "tables"); strings.TrimSpace(locks) != "" {
				t.Fatalf("network locks left in the restored namespace: %s", locks)
			}
		})
	}
}

// TestRestoreIntoSameNamespace restores right after the dump into the
// namespace the container had: the dump's lock must keep the peer from
// being reset while the container is away, and go once it is back.
func TestRestoreIntoSameNamespace(t *testing.T) {
	l, c, client := echoSetup(t, "tcp4")
	archive := c.dump("--tcp-established")
	_, before, _ := client.state()
	waitFor(t, 5*time.Second, "the dumped processes to go", func() bool { return len(c.pids()) == 0 })
	// Nothing of the old connection may linger (no FIN-WAIT socket).
	if out := mustRun(t, "ip", "netns", "exec", "crt-"+l.id, "ss", "-tanH"); strings.Contains(out, l.v4(3)) {
		t.Fatalf("sockets of the dumped container linger: %s", out)
	}
	time.Sleep(500 * time.Millisecond) // the peer retransmits into the lock meanwhile

	c.restore(archive, "--tcp-established")
	client.waitEchoed(t, before+100, 30*time.Second)
	if locks := mustRun(t, "ip", "netns", "exec", "crt-"+l.id, "nft", "list", "tables"); strings.TrimSpace(locks) != "" {
		t.Fatalf("network locks left after the restore: %s", locks)
	}
}

// TestHttpdInRebuiltNamespace restores a listening server into a namespace
// rebuilt from the archive: it answers on the same address.
func TestHttpdInRebuiltNamespace(t *testing.T) {
	l := newLAN(t)
	ns := "crt-" + l.id
	l.attach(ns, 2, true)
	c := startContainer(t, containerSpec{
		args:      []string{"/bin/httpd", "-f", "-p", "8080", "-h", "/www"},
		netnsPath: "/run/netns/" + ns,
	})
	peer := "crp-" + l.id
	l.attach(peer, 3, true)
	url := "http://" + net.JoinHostPort(l.v4(2), "8080") + "/"
	var page string
	waitFor(t, 10*time.Second, "httpd", func() bool {
		var err error
		page, err = httpGet("/run/netns/"+peer, url)
		return err == nil
	})
	archive := c.dump()
	mustRun(t, "ip", "netns", "del", ns)

	// The container's address, taken meanwhile by another namespace on
	// the bridge, is found before anything is created.
	mustRun(t, "ip", "-n", peer, "addr", "add", l.v4(2)+"/24", "dev", "eth0")
	cgBefore := fmt.Sprint(c.cgroupDirs())
	r := crtool(t, "restore", "-f", archive, "--allow-host-path", c.dir)
	if r.code == 0 || !strings.Contains(r.stderr, l.v4(2)) || !strings.Contains(r.stderr, "in use") {
		t.Fatalf("restore with the address taken: %s", r)
	}
	if _, err := os.Stat("/run/netns/" + ns); err == nil {
		t.Fatal("the refused restore left a network namespace")
	}
	if after := fmt.Sprint(c.cgroupDirs()); after != cgBefore {
		t.Fatalf("the refused restore changed the cgroups: %s, before %s", after, cgBefore)
	}
	mustRun(t, "ip", "-n", peer, "addr", "del", l.v4(2)+"/24", "dev", "eth0")

	c.restore(archive)
	got, err := httpGet("/run/netns/"+peer, url)
	if err != nil || got != page {
		t.Fatalf("after restore into a rebuilt namespace: %q, %v; want %q", got, err, page)
	}
	got6, err := httpGet("/run/netns/"+peer, "http://"+net.JoinHostPort(l.v6(2), "8080")+"/")
	if err != nil || got6 != page {
		t.Fatalf("over IPv6: %q, %v", got6, err)
	}
}

// TestEstablishedNeedsFlag refuses to dump established connections without
// --tcp-established, in one line, and leaves the connection working.
func TestEstablishedNeedsFlag(t *testing.T) {
	_, c, client := echoSetup(t, "tcp4")
	r := crtool(t, "dump", "--pid", fmt.Sprint(c.pid), "-f", filepath.Join(c.dir, "x.tar.gz"))
	if r.code != 1 || !strings.Contains(r.stderr, "established TCP connections") || !strings.Contains(r.stderr, "--tcp-established") {
		t.Fatalf("%s", r)
	}
	_, n, _ := client.state()
	client.waitEchoed(t, n+20, 10*time.Second)
}
