package test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/cpufeat"
	"github.com/crtool/crtool/internal/testutil"
)

// restoreRefused is restoreFails for a blocker of the pre-flight: exit 1,
// the reason as crtool's one error line, and nothing created, the state
// directory of an archive crtool did not write included.
func restoreRefused(t *testing.T, c *container, archive, name, want string, extra ...string) {
	t.Helper()
	r := restoreFails(t, c, archive, want, extra...)
	var lines []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "crtool: error: ") {
			lines = append(lines, l)
		}
	}
	if r.code != 1 || r.stdout != "" || len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Fatalf("want exit 1 and one error line with %q: %s", want, r)
	}
	if _, err := os.Stat(filepath.Join("/var/lib/crtool/containers", name)); err == nil {
		t.Fatalf("the refused restore created /var/lib/crtool/containers/%s", name)
	}
}

// TestRestoreAVX512Archive restores a Podman archive whose httpd chose
// AVX-512 code (FORMAT.md: "CPU features travel with a checkpoint"). A CPU
// without AVX-512 must refuse it before creating anything, naming the
// features: CRIU would restore it, and the first request would kill httpd
// with SIGILL. A CPU with AVX-512 restores it, and httpd serves.
func TestRestoreAVX512Archive(t *testing.T) {
	requireEnv(t)
	host := cpufeat.Host()
	archive := filepath.Join(testutil.RequireReference(t), "archives", "bb2-httpd-gzip.tar.gz")
	c, name, args := foreignOnLoopback(t, archive, "bb2cpu-")
	args = append(args, "--root", imageRootfs(t))

	if !cpufeat.Has(host, "avx512f") || !cpufeat.Has(host, "avx512vl") || !cpufeat.Has(host, "avx512bw") {
		t.Logf("this CPU (%s) lacks AVX-512: the restore must be refused", host.Model)
		restoreRefused(t, c, archive, name, "checkpoint needs CPU features this host lacks: avx512f avx512vl avx512bw (process 1 used AVX-512 registers; code chosen for them would die with SIGILL): restore on a CPU that has them, or pass --skip-cpu-check", args...)
		return
	}
	t.Logf("this CPU (%s) has AVX-512: the archive restores", host.Model)
	c.restore(archive, args...)
	for path, want := range map[string]string{"/": "hello from crtest", "/runtime.html": "written at runtime"} {
		got, err := httpGet("/run/netns/"+name, "http://127.0.0.1:8080"+path)
		if err != nil || !strings.Contains(got, want) {
			t.Fatalf("GET %s: %q, %v; want %q", path, got, err, want)
		}
	}
}

// TestRestoreChecksDumpingCPU: crtool.json records the CPU a container was
// dumped on; an archive whose CPU had a feature this one lacks is refused
// before anything is created, and --skip-cpu-check restores it anyway.
func TestRestoreChecksDumpingCPU(t *testing.T) {
	c := newCounter(t)
	atDump := c.ask()
	archive := c.dump()
	c.killAll()
	mustRun(t, env.runc, "--root", c.runcRoot, "delete", "-f", c.id)
	waitFor(t, 5*time.Second, "the cgroups to go", func() bool { return len(c.cgroupDirs()) == 0 })

	dir := t.TempDir()
	mustRun(t, "tar", "-C", dir, "-xzf", archive)
	md, err := format.ReadMetadata(dir)
	if err != nil {
		t.Fatal(err)
	}
	host := cpufeat.Host()
	if md.CPU == nil || md.CPU.Model != host.Model || md.CPU.XCR0 != host.XCR0 || !slices.Equal(md.CPU.Flags, host.Flags) {
		t.Fatalf("crtool.json records CPU %+v, want this host's %+v", md.CPU, host)
	}
	// A feature no CPU this test runs on offers to programs: Linux
	// dropped MPX in 5.6, and CPUs with APX have no MPX.
	lacking := ""
	for _, f := range []string{"mpx", "apx_f"} {
		if !cpufeat.Has(host, f) {
			lacking = f
			break
		}
	}
	if lacking == "" {
		t.Fatalf("this CPU (%s) offers both MPX and APX: no feature to record that it lacks", host.Model)
	}
	md.CPU.Flags = append(md.CPU.Flags, lacking)
	if err := format.WriteMetadata(dir, md); err != nil {
		t.Fatal(err)
	}
	// The manifest would refuse the edited crtool.json; an archive without
	// one restores as another engine's does.
	if err := os.Remove(filepath.Join(dir, format.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	variant := filepath.Join(t.TempDir(), "other-cpu.tar.gz")
	mustRun(t, "tar", "-C", dir, "-czf", variant, ".")

	restoreRefused(t, c, variant, c.id, "checkpoint needs CPU features this host lacks: "+lacking+" (the CPU it was dumped on, "+host.Model+", had them")
	if pids := c.pids(); len(pids) > 0 {
		t.Fatalf("processes after a refused restore: %v", pids)
	}
	c.restore(variant, "--skip-cpu-check")
	if n := c.ask(); n < atDump {
		t.Fatalf("counter %d after the restore, %d before the dump", n, atDump)
	}
	c.waitCount(c.ask())
}
