package network

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/testutil"
)

// testPrefix starts every namespace and host link the tests create, so
// TestMain can prove none is left behind.
const testPrefix = "crtnt"

func TestMain(m *testing.M) {
	code := m.Run()
	if os.Geteuid() == 0 {
		if left := leftovers(); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "tests left behind: %s\n", strings.Join(left, ", "))
			code = 1
		}
	}
	os.Exit(code)
}

func leftovers() []string {
	var out []string
	named, _ := filepath.Glob(filepath.Join(NamedDir, testPrefix+"*"))
	out = append(out, named...)
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, testPrefix) {
			out = append(out, "host link "+l.Attrs().Name)
		}
	}
	return out
}

// env hands out unique names and removes what it created when the test ends,
// also when it fails.
type env struct {
	t  *testing.T
	id string // testPrefix + 6 hex digits: 11 characters, leaving 4 for suffixes
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testutil.RequireRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	return &env{t: t, id: testPrefix + hex.EncodeToString(b)}
}

// name is a unique name usable for host links (at most 15 characters).
func (e *env) name(suffix string) string {
	e.t.Helper()
	n := e.id + suffix
	if len(n) > 15 {
		e.t.Fatalf("test link name %q is longer than 15 characters", n)
	}
	return n
}

// netns creates a named namespace and returns its name and path.
func (e *env) netns(suffix string) (name, path string) {
	e.t.Helper()
	name = e.id + "-" + suffix
	path, err := CreateNamed(name)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := DeleteNamed(name); err != nil {
			e.t.Errorf("cleanup: %v", err)
		}
	})
	return name, path
}

// hostLink removes a host link (and so its veth peer) at the end of the test.
func (e *env) hostLink(name string) {
	e.t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				e.t.Errorf("cleanup host link %s: %v", name, err)
			}
		}
	})
}

// ip runs iproute2 inside the named namespace (or on the host for ""),
// an implementation independent of the code under test.
func (e *env) ip(ns string, args ...string) {
	e.t.Helper()
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		e.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// ipScript runs one ip command per line.
func (e *env) ipScript(ns, script string) {
	e.t.Helper()
	for _, line := range strings.Split(script, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			e.ip(ns, strings.Fields(line)...)
		}
	}
}

func (e *env) sysctl(ns, key, value string) {
	e.t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-q", "-w", key+"="+value).CombinedOutput(); err != nil {
		e.t.Fatalf("sysctl %s=%s in %s: %v\n%s", key, value, ns, err, out)
	}
}

// kernelHas reports whether the kernel can create a link of this kind (the
// test kernel may lack dummy or 8021q).
func (e *env) kernelHas(ns string, args ...string) bool {
	e.t.Helper()
	args = append([]string{"-n", ns, "link", "add"}, args...)
	if err := exec.Command("ip", args...).Run(); err != nil {
		return false
	}
	return true
}

func findAddr(cfg *format.Config, link, cidr string) *format.Addr {
	for i := range cfg.Addrs {
		if cfg.Addrs[i].Link == link && cfg.Addrs[i].CIDR == cidr {
			return &cfg.Addrs[i]
		}
	}
	return nil
}

func routeStrings(cfg *format.Config) map[string]format.Route {
	m := map[string]format.Route{}
	for _, r := range cfg.Routes {
		m[r.String()] = r
	}
	return m
}

func hostLinkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}
