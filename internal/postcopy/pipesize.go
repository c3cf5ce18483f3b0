package postcopy

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// PipeMaxSize is the fs.pipe-max-size a lazy transfer needs: CRIU's lazy
// page server sizes its pipe to 4 MiB (page-pipe.c, pipe_read_dest_init)
// and, refused, fails on its first page with EBADF; without
// CAP_SYS_RESOURCE (root in a container) the kernel refuses pipes beyond
// the limit, 1 MiB by default.
const PipeMaxSize = 4 << 20

// PipeMaxSizePath is the sysctl's file.
const PipeMaxSizePath = "/proc/sys/fs/pipe-max-size"

// EnsurePipeMaxSize raises fs.pipe-max-size to at least n for as long as
// a transfer runs; the returned function puts the old value back (once,
// and only if nothing else changed it meanwhile). old is the value before,
// 0 when nothing was raised.
func EnsurePipeMaxSize(n int) (restore func() error, old int, err error) {
	b, err := os.ReadFile(PipeMaxSizePath)
	if err != nil {
		return nil, 0, fmt.Errorf("fs.pipe-max-size: %w", err)
	}
	old, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, 0, fmt.Errorf("fs.pipe-max-size: %w", err)
	}
	if old >= n {
		return func() error { return nil }, 0, nil
	}
	if err := os.WriteFile(PipeMaxSizePath, []byte(strconv.Itoa(n)), 0o644); err != nil {
		return nil, 0, fmt.Errorf("raise fs.pipe-max-size to %d for the lazy-pages daemon (sysctl fs.pipe-max-size=%d): %w", n, n, err)
	}
	var once sync.Once
	var rerr error
	return func() error {
		once.Do(func() {
			b, err := os.ReadFile(PipeMaxSizePath)
			if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(n) {
				return
			}
			if err := os.WriteFile(PipeMaxSizePath, []byte(strconv.Itoa(old)), 0o644); err != nil {
				rerr = fmt.Errorf("put fs.pipe-max-size back to %d: %w", old, err)
			}
		})
		return rerr
	}, old, nil
}
