package record

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's start time; Linux
// fixes it at 100 on every architecture crtool runs on.
const clockTicks = 100

// Identify reads pid's start time and the boot it belongs to.
func Identify(pid int) (Process, error) {
	st, err := startTime(pid)
	if err != nil {
		return Process{}, err
	}
	return Process{PID: pid, StartTime: st, BootID: bootID()}, nil
}

// startTime is field 22 of /proc/PID/stat: when pid started, in clock
// ticks after boot.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read start time of pid %d: %w", pid, err)
	}
	s := string(b)
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("pid %d: malformed /proc/%d/stat", pid, pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("pid %d: malformed /proc/%d/stat", pid, pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		// A zombie has exited; only its parent's wait is missing.
		return 0, fmt.Errorf("pid %d has exited: %w", pid, os.ErrNotExist)
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("pid %d: start time %q: %w", pid, f[19], err)
	}
	return v, nil
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Alive reports whether the recorded process still runs: the same PID with
// the same start time in the same boot, not a process that reused the PID.
func (p Process) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	if p.BootID != "" && p.BootID != bootID() {
		return false
	}
	st, err := startTime(p.PID)
	return err == nil && st == p.StartTime
}

// Started is when the process started, from its start time and the
// host's boot time.
func (p Process) Started() time.Time {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return time.Time{}
	}
	// Uptime has whole seconds only; CLOCK_BOOTTIME is precise.
	var ts unix.Timespec
	up := time.Duration(si.Uptime) * time.Second
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		up = time.Duration(ts.Nano())
	}
	boot := time.Now().Add(-up)
	return boot.Add(time.Duration(p.StartTime) * time.Second / clockTicks)
}

// Signal sends sig to the process if it is still the recorded one; a
// process that is gone is not an error.
func (p Process) Signal(sig unix.Signal) error {
	if !p.Alive() {
		return nil
	}
	if err := unix.Kill(p.PID, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal pid %d: %w", p.PID, err)
	}
	return nil
}
