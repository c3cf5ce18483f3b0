package test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestStreamThroughPipe migrates with no archive file at all:
// crtool dump -f - | crtool restore -f -, as over ssh to another host.
func TestStreamThroughPipe(t *testing.T) {
	c := startContainer(t, containerSpec{args: []string{"/bin/sh", "-c", counterScript}})
	before := c.waitCount(30)

	dumpCmd := exec.Command(env.crtool, "dump", "--pid", strconv.Itoa(c.pid), "-f", "-", "--compress", "zstd", "--runtime-root", c.runcRoot, "--print-stats")
	restoreCmd := exec.Command(env.crtool, "restore", "-f", "-", "--print-stats", "--allow-host-path", c.dir)
	pipe, err := dumpCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	restoreCmd.Stdin = pipe
	var dumpErr, restoreOut, restoreErr bytes.Buffer
	dumpCmd.Stderr = &dumpErr
	restoreCmd.Stdout, restoreCmd.Stderr = &restoreOut, &restoreErr
	if err := restoreCmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := dumpCmd.Run(); err != nil {
		t.Fatalf("dump: %v\n%s", err, dumpErr.String())
	}
	if err := restoreCmd.Wait(); err != nil {
		t.Fatalf("restore: %v\n%s", err, restoreErr.String())
	}
	t.Logf("dump:\n%s\nrestore:\n%s%s", dumpErr.String(), restoreOut.String(), restoreErr.String())

	// With -f -, the dump's statistics go to stderr, after which comes the
	// summary line.
	var ds struct {
		Duration   int64 `json:"crtool_checkpoint_duration"`
		Containers []struct {
			FreezingTime int64          `json:"freezing_time"`
			FrozenTime   int64          `json:"frozen_time"`
			Runtime      int64          `json:"runtime_checkpoint_duration"`
			CRIU         map[string]any `json:"criu_statistics"`
		} `json:"container_statistics"`
	}
	stats := dumpErr.String()
	if i := strings.Index(stats, "crtool: checkpointed"); i >= 0 {
		stats = stats[:i]
	}
	if err := json.Unmarshal([]byte(stats), &ds); err != nil {
		t.Fatalf("dump --print-stats: %v: %q", err, stats)
	}
	if len(ds.Containers) != 1 || ds.Containers[0].FreezingTime <= 0 || ds.Containers[0].Runtime <= 0 || ds.Containers[0].CRIU["pages_written"] == nil {
		t.Fatalf("dump statistics incomplete: %+v", ds)
	}

	lines := strings.SplitN(restoreOut.String(), "\n", 2)
	pid, err := strconv.Atoi(lines[0])
	if err != nil {
		t.Fatalf("restore printed %q first, want the PID", lines[0])
	}
	var rs struct {
		Containers []struct {
			PID  int            `json:"pid"`
			CRIU map[string]any `json:"criu_statistics"`
		} `json:"container_statistics"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &rs); err != nil || len(rs.Containers) != 1 || rs.Containers[0].PID != pid {
		t.Fatalf("restore --print-stats: %v: %q", err, lines[1])
	}
	c.pid = pid
	if after := c.ask(); after < before {
		t.Fatalf("counter after streaming migration = %d, before = %d", after, before)
	}
}
