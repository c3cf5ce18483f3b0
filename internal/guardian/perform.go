package guardian

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/freezer"
	"github.com/crtool/crtool/internal/network"
	"github.com/crtool/crtool/internal/podman"
	"github.com/crtool/crtool/internal/safefs"
	"github.com/crtool/crtool/internal/undo"
	"github.com/crtool/crtool/internal/workdir"
)

// The kinds of journal steps. Every one is idempotent: a guardian and a
// later `crtool recover` may both try it, and a piece already gone is done.
const (
	KindThaw          = "thaw"           // Path: freezer cgroup directory
	KindDeleteTable   = "delete-table"   // Netns: namespace path, Name: nftables inet table
	KindRemove        = "remove"         // Path: file or directory; mounts below are detached first
	KindRemoveGlob    = "remove-glob"    // Path: a glob of files (a temporary archive)
	KindKeepLog       = "keep-log"       // Path: work directory, Name: its CRIU log, Paths: where the log is kept
	KindKillCgroups   = "kill-cgroups"   // Paths: cgroup directories whose processes are killed
	KindRemoveCgroups = "remove-cgroups" // Paths: cgroup directories, removed deepest first
	KindDeleteNetns   = "delete-netns"   // Name: a /run/netns name
	KindDeleteLink    = "delete-link"    // Netns: namespace path or "host", Name: link
	KindUnmount       = "unmount"        // Path: a mount point, detached
	KindRmdirCgroup   = "rmdir-cgroup"   // Path: one cgroup directory a restore created (a parent), removed only when empty
	KindSysctl        = "sysctl"         // Path: /proc/sys file, Name: the value to put back, Paths[0]: the value crtool set
	KindWaitExit      = "wait-exit"      // Name: PID, Path: its start time (/proc/PID/stat field 22)
	KindUnmountImage  = "unmount-image"  // Name: a Podman image mounted with podman image mount
)

// waitExitTimeout bounds how long the guardian lets a CRIU that outlived
// crtool finish by itself before it kills it.
var waitExitTimeout = 20 * time.Second

// WaitExit is the record of a process (CRIU) that must end before the
// other steps are undone: a CRIU whose caller died aborts its dump by
// itself, resuming the tasks and taking their connections out of repair
// mode; undoing under it would race with it.
func WaitExit(pid int) undo.Record {
	return undo.Record{Kind: KindWaitExit, Name: strconv.Itoa(pid), Path: startTime(pid)}
}

// startTime identifies a process beyond its PID, which the kernel reuses.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// waitExit waits for the process the record names to end, and kills it
// when it takes longer than waitExitTimeout.
func waitExit(r undo.Record) error {
	pid, err := strconv.Atoi(r.Name)
	if err != nil {
		return fmt.Errorf("bad pid %q", r.Name)
	}
	alive := func() bool { st := startTime(pid); return st != "" && st == r.Path }
	deadline := time.Now().Add(waitExitTimeout)
	for alive() {
		if time.Now().After(deadline) {
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("kill pid %s: %w", r.Name, err)
			}
			deadline = time.Now().Add(waitExitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Thaw is the record of a freeze.
func Thaw(dir string) undo.Record { return undo.Record{Kind: KindThaw, Path: dir} }

// DeleteTable is the record of an nftables table crtool installed.
func DeleteTable(nsPath, table string) undo.Record {
	return undo.Record{Kind: KindDeleteTable, Netns: nsPath, Name: table}
}

// DeleteTablesExcept is the record of nftables tables named prefix* that
// someone else (CRIU) may leave in the namespace, except those in keep
// (present before crtool started).
func DeleteTablesExcept(nsPath, prefix string, keep []string) undo.Record {
	return undo.Record{Kind: KindDeleteTable, Netns: nsPath, Name: prefix + "*", Paths: keep}
}

// Remove is the record of a file or directory crtool created.
func Remove(path string) undo.Record { return undo.Record{Kind: KindRemove, Path: path} }

// RemoveGlob is the record of temporary files named by pattern.
func RemoveGlob(pattern string) undo.Record { return undo.Record{Kind: KindRemoveGlob, Path: pattern} }

// KeepLog is the record of a work directory whose CRIU log a failed run
// keeps, moved to keep (workdir.KeptLog).
func KeepLog(dir, log, keep string) undo.Record {
	return undo.Record{Kind: KindKeepLog, Path: dir, Name: log, Paths: []string{keep}}
}

// KillCgroups is the record of cgroups a restore fills with processes.
func KillCgroups(dirs []string) undo.Record { return undo.Record{Kind: KindKillCgroups, Paths: dirs} }

// RemoveCgroups is the record of cgroup directories a restore created.
func RemoveCgroups(dirs []string) undo.Record {
	return undo.Record{Kind: KindRemoveCgroups, Paths: dirs}
}

// DeleteNetns is the record of a named network namespace crtool created.
func DeleteNetns(name string) undo.Record { return undo.Record{Kind: KindDeleteNetns, Name: name} }

// DeleteLink is the record of a link crtool created in the namespace at
// nsPath.
func DeleteLink(nsPath, name string) undo.Record {
	return undo.Record{Kind: KindDeleteLink, Netns: nsPath, Name: name}
}

// RestoreSysctl is the record of a host sysctl crtool raised from old to
// set; old 0 means it was not changed. The old value goes back only if the
// sysctl still has crtool's.
func RestoreSysctl(path string, old, set int) undo.Record {
	if old == 0 {
		return undo.Record{Kind: KindSysctl, Path: path}
	}
	return undo.Record{Kind: KindSysctl, Path: path, Name: strconv.Itoa(old), Paths: []string{strconv.Itoa(set)}}
}

// Unmount is the record of a mount crtool made.
func Unmount(path string) undo.Record { return undo.Record{Kind: KindUnmount, Path: path} }

// UnmountImage is the record of a Podman image crtool mounted.
func UnmountImage(image string) undo.Record { return undo.Record{Kind: KindUnmountImage, Name: image} }

// Perform carries out one journal step.
func Perform(r undo.Record) error {
	switch r.Kind {
	case KindThaw:
		fr, err := freezer.New(r.Path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		return ignoreGone(fr.Thaw())
	case KindDeleteTable:
		if _, err := os.Stat(r.Netns); errors.Is(err, os.ErrNotExist) {
			return nil // the namespace, and its table with it, is gone
		}
		prefix, many := strings.CutSuffix(r.Name, "*")
		if !many {
			return network.DeleteTable(r.Netns, r.Name)
		}
		tables, err := network.Tables(r.Netns, prefix)
		if err != nil {
			return err
		}
		var errs []error
		for _, t := range tables {
			if !slices.Contains(r.Paths, t) {
				errs = append(errs, network.DeleteTable(r.Netns, t))
			}
		}
		return errors.Join(errs...)
	case KindRemove:
		if err := workdir.DetachMounts(r.Path); err != nil {
			return err
		}
		// A state directory can hold an archive's tree, nested deeper
		// than os.RemoveAll can go.
		return safefs.RemoveTree(context.Background(), r.Path)
	case KindRemoveGlob:
		paths, err := filepath.Glob(r.Path)
		if err != nil {
			return err
		}
		var errs []error
		for _, p := range paths {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case KindKeepLog:
		d := &workdir.Dir{Path: r.Path}
		if _, err := os.Stat(r.Path); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		keep := workdir.KeptLog("recovered")
		if len(r.Paths) == 1 {
			keep = r.Paths[0]
		}
		return d.RemoveKeepingLog(r.Name, keep)
	case KindKillCgroups:
		var errs []error
		for _, dir := range r.Paths {
			if fr, err := freezer.New(dir); err == nil {
				_ = fr.Thaw() // a frozen task does not die until thawed
			}
			if err := cgroups.Kill(dir, 5*time.Second); ignoreGone(err) != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case KindRemoveCgroups:
		return ignoreGone(cgroups.Remove(r.Paths))
	case KindDeleteNetns:
		return ignoreGone(network.DeleteNamed(r.Name))
	case KindDeleteLink:
		return network.DeleteLink(r.Netns, r.Name)
	case KindUnmount:
		return workdir.DetachMounts(r.Path)
	case KindWaitExit:
		return waitExit(r)
	case KindSysctl:
		if r.Name == "" || len(r.Paths) != 1 || !strings.HasPrefix(r.Path, "/proc/sys/") {
			return nil
		}
		b, err := os.ReadFile(r.Path)
		if err != nil || strings.TrimSpace(string(b)) != r.Paths[0] {
			return nil // changed by someone else since: theirs now
		}
		return os.WriteFile(r.Path, []byte(r.Name), 0o644)
	case KindRmdirCgroup:
		// A parent that meanwhile holds another container stays.
		if err := unix.Rmdir(r.Path); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
			return fmt.Errorf("remove cgroup %s: %w", r.Path, err)
		}
		return nil
	case KindUnmountImage:
		return podman.UnmountImage(r.Name)
	}
	return fmt.Errorf("unknown journal step %q", r.Kind)
}

func ignoreGone(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
