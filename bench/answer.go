package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/crtool/crtool/internal/network"
)

// WorkloadPort is where both workloads listen, inside their namespace.
const WorkloadPort = 7000

// askOnce connects to the workload in the namespace at nsPath and checks
// its reply.
func askOnce(nsPath string, w Workload) error {
	var conn net.Conn
	err := network.Do(nsPath, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", WorkloadPort), time.Second)
		return err
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if w.Request != "" {
		if _, err := io.WriteString(conn, w.Request); err != nil {
			return err
		}
	}
	b, err := io.ReadAll(io.LimitReader(conn, 4096))
	if err != nil && len(b) == 0 {
		return err
	}
	if !strings.Contains(string(b), w.Expect) {
		return fmt.Errorf("answered %q, want %q", truncate(string(b), 80), w.Expect)
	}
	return nil
}

// waitAnswer asks the workload until it answers right or timeout passes,
// and returns how long that took.
func waitAnswer(ctx context.Context, nsPath string, w Workload, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	var last error
	for {
		if last = askOnce(nsPath, w); last == nil {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no answer on port %d in netns %s after %v: %w", WorkloadPort, nsPath, timeout, last)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
