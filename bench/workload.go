package bench

import (
	"context"
	_ "embed"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed csrc/memhog.c
var memhogSource []byte

//go:embed csrc/rusage.c
var rusageSource []byte

// buildLauncher compiles csrc/rusage.c into dir and returns its path.
func buildLauncher(ctx context.Context, dir string) (string, error) {
	src := filepath.Join(dir, "rusage.c")
	bin := filepath.Join(dir, "rusage")
	if err := os.WriteFile(src, rusageSource, 0o644); err != nil {
		return "", err
	}
	if _, err := run(ctx, command{name: "gcc", args: []string{"-O2", "-static", "-o", bin, src}}); err != nil {
		return "", fmt.Errorf("compile the rusage launcher: %w", err)
	}
	return bin, nil
}

// Workload is what runs in the benchmark's containers.
type Workload struct {
	Key     string   // JSON key: "64MiB", "httpd"
	Label   string   // table heading
	SizeMiB int      // memory it touches (0: small, not sized)
	Args    []string // command inside the container
	Request string   // sent after connecting ("" sends nothing)
	Expect  string   // the reply contains this
}

// MemWorkload touches mib MiB, half incompressible, and answers "ok mib".
func MemWorkload(mib int) Workload {
	return Workload{
		Key:     fmt.Sprintf("%dMiB", mib),
		Label:   fmt.Sprintf("%d MiB workload (memhog)", mib),
		SizeMiB: mib,
		Args:    []string{"/memhog", strconv.Itoa(mib)},
		Expect:  fmt.Sprintf("ok %d\n", mib),
	}
}

// HttpdWorkload is a busybox httpd serving a static page.
func HttpdWorkload() Workload {
	return Workload{
		Key:     "httpd",
		Label:   "small container (busybox httpd)",
		Args:    []string{"/bin/httpd", "-f", "-p", strconv.Itoa(WorkloadPort), "-h", "/www"},
		Request: "GET / HTTP/1.0\r\n\r\n",
		Expect:  "crtool bench",
	}
}

// startTimeout is how long a new container may take to fill its memory.
func (w Workload) startTimeout() time.Duration {
	return time.Minute + time.Duration(w.SizeMiB)*20*time.Second/1024
}

// opTimeout bounds a single dump or restore.
func (w Workload) opTimeout() time.Duration {
	return 5*time.Minute + time.Duration(w.SizeMiB)*2*time.Minute/1024
}

// buildRootfs compiles memhog statically and makes a busybox root
// filesystem with it at dir: every applet in /bin, /memhog, a page in /www.
func buildRootfs(ctx context.Context, dir, busybox string) error {
	src := filepath.Join(filepath.Dir(dir), "memhog.c")
	if err := os.WriteFile(src, memhogSource, 0o644); err != nil {
		return err
	}
	for _, d := range []string{"bin", "tmp", "proc", "sys", "dev", "etc", "www", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if _, err := run(ctx, command{name: "gcc", args: []string{"-O2", "-static", "-o", filepath.Join(dir, "memhog"), src}}); err != nil {
		return fmt.Errorf("compile the workload (gcc -static needs libc6-dev): %w", err)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("busybox-static is not installed (make deps): %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), bb, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", busybox, err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/:/bin/sh\n",
		"etc/group":      "root:x:0:\n",
		"www/index.html": "<h1>crtool bench</h1>\n",
	}
	for p, content := range files {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Constants of memhog.c's fill.
const (
	mixSeed = 0x9E3779B97F4A7C15
	mixTail = " of the crtool benchmark: the quick brown fox jumps over the lazy dog\n"
)

// dataMix returns the bytes memhog fills its size bytes of memory with: the
// first half from xorshift64, the second half numbered text lines.
func dataMix(size int) []byte {
	buf := make([]byte, size)
	half := size / 2
	fillRandom(buf[:half])
	fillText(buf[half:])
	return buf
}

func fillRandom(p []byte) {
	x := uint64(mixSeed)
	i := 0
	for ; i+8 <= len(p); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(p[i:], x)
	}
	for ; i < len(p); i++ {
		p[i] = byte(i)
	}
}

func fillText(p []byte) {
	line := make([]byte, 0, 128)
	for counter, off := uint64(1), 0; off < len(p); counter++ {
		line = append(line[:0], "line "...)
		line = fmt.Appendf(line, "%010d", counter%10_000_000_000)
		line = append(line, mixTail...)
		off += copy(p[off:], line)
	}
}
