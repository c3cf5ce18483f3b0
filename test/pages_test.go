package test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/testutil"
)

// memcheckMiB is the tests' container memory: larger than the work
// directory's tmpfs (smallTmpfsMiB), so pages that were staged would not
// fit.
const (
	memcheckMiB   = 64
	smallTmpfsMiB = 16
)

// buildMemcheck compiles csrc/memcheck.c statically, for busybox roots.
func buildMemcheck(t *testing.T) []byte {
	t.Helper()
	_, err := exec.LookPath("gcc")
	testutil.Require(t, err == nil, "gcc is not installed")
	bin := filepath.Join(t.TempDir(), "memcheck")
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-Werror", "-static", "-o", bin, "csrc/memcheck.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startMemcheck runs memcheck with mib MiB in a test container and waits
// until it answers.
func startMemcheck(t *testing.T, mib int) *container {
	t.Helper()
	c := startContainer(t, containerSpec{
		args:  []string{"/bin/sh", "-c", fmt.Sprintf("chmod 755 /memcheck && exec /memcheck %d", mib)},
		files: map[string]string{"memcheck": string(buildMemcheck(t))},
	})
	waitFor(t, 20*time.Second, "memcheck to answer", func() bool {
		_, err := c.memcheck()
		return err == nil
	})
	return c
}

// memcheck asks the container's memcheck to verify its memory and returns
// its counter.
func (c *container) memcheck() (int, error) {
	conn, err := dialIn(c.netnsPath, "tcp", "127.0.0.1:7000")
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Read to the end: memcheck closes first, so its socket is no longer
	// established when a dump follows (crtool would refuse it).
	b, err := io.ReadAll(conn)
	if err != nil {
		return 0, fmt.Errorf("memcheck: %w", err)
	}
	line := string(b)
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ok" {
		return 0, fmt.Errorf("memcheck answered %q: memory differs from what the process wrote", strings.TrimSpace(line))
	}
	return strconv.Atoi(f[1])
}

// mustMemcheck is memcheck failing the test.
func (c *container) mustMemcheck() int {
	c.t.Helper()
	n, err := c.memcheck()
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// smallTmpfs mounts a tmpfs of mib MiB for the test.
func smallTmpfs(t *testing.T, mib int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%dm,mode=0700", mib)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// archiveListing lists an archive the way a user without crtool would:
// decompressed by gzip -d or zstd -d, read by tar.
func archiveListing(t *testing.T, archive string) string {
	t.Helper()
	var shell string
	switch {
	case strings.HasSuffix(archive, ".tar.gz"):
		shell = "gzip -dc \"$1\" | tar -tvf -"
	case strings.HasSuffix(archive, ".tar.zst"):
		shell = "zstd -dcq \"$1\" | tar -tvf -"
	default:
		shell = "tar -tvf \"$1\""
	}
	out, err := exec.Command("bash", "-o", "pipefail", "-c", shell, "bash", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", shell, err, out)
	}
	return string(out)
}

// pagesBytes sums the sizes of the checkpoint/pages-*.img members in a
// tar -tv listing.
func pagesBytes(t *testing.T, listing string) int64 {
	t.Helper()
	var total int64
	for _, l := range strings.Split(listing, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasPrefix(f[len(f)-1], "checkpoint/pages-") {
			continue
		}
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("listing line %q: %v", l, err)
		}
		total += n
	}
	return total
}

// TestPagesStreamIntoArchive dumps through the page-server path for each
// compression, with a work directory too small for the container's memory:
// the pages must go straight into the archive. gzip -d, zstd -d and tar
// read the archive, and the restored process finds its memory intact.
func TestPagesStreamIntoArchive(t *testing.T) {
	for _, ext := range []string{".tar", ".tar.gz", ".tar.zst"} {
		t.Run(strings.TrimPrefix(ext, "."), func(t *testing.T) {
			c := startMemcheck(t, memcheckMiB)
			before := c.mustMemcheck()
			work := smallTmpfs(t, smallTmpfsMiB)
			archive := filepath.Join(c.dir, uniqueID("dump-")+ext)
			r := crtool(t, "dump", "-v", "--pid", strconv.Itoa(c.pid), "-f", archive, "--runtime-root", c.runcRoot, "--work-dir", work)
			if r.code != 0 {
				t.Fatalf("dump failed: %s", r)
			}
			if !strings.Contains(r.stderr, "bytes of memory pages into") {
				t.Errorf("dump did not take the page-server path:\n%s", r.stderr)
			}
			if n := pagesBytes(t, archiveListing(t, archive)); n < memcheckMiB<<20 {
				t.Fatalf("the archive's pages hold %d bytes, want at least %d MiB", n, memcheckMiB)
			}
			if entries, _ := os.ReadDir(work); len(entries) != 0 {
				t.Errorf("work directory not cleaned: %v", entries)
			}
			c.restore(archive)
			after := c.mustMemcheck()
			if after < before {
				t.Fatalf("memcheck counter %d after restore, %d before the dump: it started over", after, before)
			}
			waitFor(t, 10*time.Second, "the counter to advance", func() bool {
				n, err := c.memcheck()
				return err == nil && n > after
			})
		})
	}
}

// TestPagesReceiverFailure: the archive's file system fills up while CRIU
// sends pages, so the receiver fails mid-dump; CRIU's dump fails with it,
// and the container is thawed and unharmed, with no archive left.
func TestPagesReceiverFailure(t *testing.T) {
	c := startMemcheck(t, memcheckMiB)
	out := smallTmpfs(t, smallTmpfsMiB)
	archive := filepath.Join(out, "full.tar")
	r := crtool(t, "dump", "--pid", strconv.Itoa(c.pid), "-f", archive, "--runtime-root", c.runcRoot)
	if r.code == 0 {
		t.Fatalf("dump into a full file system succeeded: %s", r)
	}
	if !strings.Contains(r.stderr, "write memory pages into") || !strings.Contains(r.stderr, "no space left") {
		t.Errorf("error does not say the pages could not be written:\n%s", r.stderr)
	}
	if st := c.freezerState(); st != "THAWED" {
		t.Fatalf("freezer state after the failed dump = %s, want THAWED", st)
	}
	n := c.mustMemcheck()
	waitFor(t, 10*time.Second, "the counter to advance", func() bool {
		m, err := c.memcheck()
		return err == nil && m > n
	})
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("left in the archive's directory: %v", entries)
	}
}
