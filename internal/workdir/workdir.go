// Package workdir manages the temporary directory in which a dump or restore
// stages CRIU's images and log.
package workdir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/internal/safefs"
)

// Dir is a staging directory with CRIU's image directory inside it.
type Dir struct {
	Path   string // the staging directory
	Images string // Path/checkpoint, CRIU's image and work directory
}

// New creates a staging directory under parent ($TMPDIR when empty).
func New(parent, prefix, imagesName string) (*Dir, error) {
	p, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	return &Dir{Path: p, Images: filepath.Join(p, imagesName)}, nil
}

// Log is the path of a CRIU log in the image directory.
func (d *Dir) Log(name string) string { return filepath.Join(d.Images, name) }

// Remove deletes the staging directory. Mounts below it are detached
// first: a CRIU killed mid-way leaves its cgroup yard (.criu.cgyard) and
// other mounts there, and removing files through them would delete the
// host's cgroups or files. The tree may be an archive's, nested deeper than
// os.RemoveAll can go.
func (d *Dir) Remove() error {
	if err := DetachMounts(d.Path); err != nil {
		return err
	}
	if err := safefs.RemoveTree(context.Background(), d.Path); err != nil {
		return fmt.Errorf("remove work directory: %w", err)
	}
	return nil
}

// LogDir keeps the CRIU log of each failed dump and restore, the last
// KeptLogs of them: the staging directory, images included, goes.
var LogDir = "/var/log/crtool"

// KeptLogs is how many logs LogDir keeps; older ones are removed.
const KeptLogs = 20

// KeptLog is where a failed op ("dump", "restore") keeps its CRIU log:
// a new name in LogDir, sortable by time.
func KeptLog(op string) string {
	return filepath.Join(LogDir, fmt.Sprintf("%s-%s-%d.log", op, time.Now().UTC().Format("20060102T150405.000000"), os.Getpid()))
}

// RemoveKeepingLog deletes the staging directory but moves the CRIU log
// to keep (see KeptLog), whose path a failed operation's error quotes;
// without a log, everything goes and nothing is kept.
func (d *Dir) RemoveKeepingLog(log, keep string) error {
	var errs []error
	// Only CRIU's own log: never a link an archive planted in its place.
	if st, err := os.Lstat(log); err == nil && st.Mode().IsRegular() {
		if err := moveLog(log, keep); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, d.Remove())
	return errors.Join(errs...)
}

// moveLog moves log to keep and prunes the logs beyond KeptLogs.
func moveLog(log, keep string) error {
	dir := filepath.Dir(keep)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keep CRIU log: %w", err)
	}
	if err := os.Rename(log, keep); err != nil {
		// Another filesystem: copy.
		b, rerr := os.ReadFile(log)
		if rerr != nil {
			return fmt.Errorf("keep CRIU log: %w", rerr)
		}
		if werr := os.WriteFile(keep, b, 0o600); werr != nil {
			return fmt.Errorf("keep CRIU log: %w", werr)
		}
	}
	return pruneLogs(dir, KeptLogs)
}

// pruneLogs removes all but the newest n logs in dir.
func pruneLogs(dir string, n int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune %s: %w", dir, err)
	}
	var logs []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".log") {
			logs = append(logs, e.Name())
		}
	}
	// Names start with the operation, then the time: order by the time.
	sort.Slice(logs, func(i, j int) bool { return logTime(logs[i]) < logTime(logs[j]) })
	var errs []error
	for len(logs) > n {
		if err := os.Remove(filepath.Join(dir, logs[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		logs = logs[1:]
	}
	return errors.Join(errs...)
}

func logTime(name string) string {
	_, rest, _ := strings.Cut(name, "-")
	return rest
}

// DetachMounts lazily unmounts every mount at or below dir, deepest first.
func DetachMounts(dir string) error {
	mounts, err := mountsBelow(dir)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("detach mount %s: %w", m, err)
		}
	}
	return nil
}

// mountsBelow lists the mount points at or below dir in this mount
// namespace, longest path first so that children go before parents.
func mountsBelow(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unescapeMount decodes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MoveImages moves the image directory to dst, which must not exist or be
// empty; it renames when it can and copies across filesystems.
func (d *Dir) MoveImages(dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("keep images: %w", err)
	}
	_ = os.Remove(dst) // only succeeds when empty
	if err := os.Rename(d.Images, dst); err == nil {
		return nil
	}
	if err := os.CopyFS(dst, os.DirFS(d.Images)); err != nil {
		return fmt.Errorf("keep images in %s: %w", dst, err)
	}
	return nil
}
