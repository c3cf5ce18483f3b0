package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/criu"
	"github.com/crtool/crtool/dump"
	"github.com/crtool/crtool/freezer"
	"github.com/crtool/crtool/images"
	"github.com/crtool/crtool/internal/progress"
	"github.com/crtool/crtool/internal/undo"
	"github.com/crtool/crtool/internal/workdir"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

var (
	// ErrBadArchive means the archive is not a usable checkpoint.
	ErrBadArchive = errors.New("not a usable checkpoint archive")
	// ErrConflict means something the restore needs is taken on this host.
	ErrConflict = errors.New("host state conflicts with the restore")
)

// Options configure a restore.
type Options struct {
	Input          string // archive path, or "-" for stdin
	Name           string
	Root           string // root filesystem; default: the recorded one
	Netns          string // join this network namespace
	PidFile        string
	TCPEstablished bool
	KeepImages     string // keep the unpacked images here
	WorkDir        string // parent of the temporary unpack directory
	CRIUPath       string
	// Bridge attaches a rebuilt namespace's veth to this bridge instead of
	// the recorded one; CreateBridge creates it when missing. PeerNetns is
	// where the host end of that veth goes (default: the recorded
	// namespace, or for archives crtool did not write, this host's).
	Bridge       string
	CreateBridge bool
	PeerNetns    string
	// Progress, a terminal, shows a bar while a large archive is read.
	Progress *os.File
	// Log receives what the container wrote to pipes that led outside it
	// (its stdout and stderr under a supervisor); default /dev/null.
	Log  string
	Logf func(format string, args ...any)
}

// Result describes a restored container.
type Result struct {
	PID      int
	Name     string
	Metadata *images.Metadata
	Duration time.Duration
	// CRIU is CRIU's own statistics of the restore (its stats-restore).
	CRIU *stats.RestoreStatsEntry
	// CRIUTime is how long CRIU's restore took.
	CRIUTime time.Duration
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Validate checks the options before anything is touched.
func (o *Options) Validate() error {
	if o.Input == "" {
		return errors.New("-f/--import is required: name the archive to restore")
	}
	if o.Input != "-" {
		st, err := os.Stat(o.Input)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("archive %s does not exist", o.Input)
			}
			return fmt.Errorf("archive %s: %w", o.Input, err)
		}
		if st.IsDir() {
			return fmt.Errorf("archive %s is a directory: name the archive file", o.Input)
		}
	}
	if o.Root != "" {
		if st, err := os.Stat(o.Root); err != nil || !st.IsDir() {
			return fmt.Errorf("--root %s is not a directory: give the container's root filesystem", o.Root)
		}
	}
	if o.Netns != "" {
		if _, err := os.Stat(o.Netns); err != nil {
			return fmt.Errorf("--netns %s: %w", o.Netns, err)
		}
	}
	if o.KeepImages != "" {
		if entries, err := os.ReadDir(o.KeepImages); err == nil && len(entries) > 0 {
			return fmt.Errorf("--keep-images %s is not empty: name a new or empty directory", o.KeepImages)
		}
	}
	return nil
}

// Run restores the archive opts.Input. On failure it removes what it created
// and leaves the archive untouched.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	start := time.Now()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	bin, err := criu.OpenAsRoot(ctx, opts.CRIUPath)
	if err != nil {
		return nil, err
	}

	var rollback undo.Stack
	defer func() {
		if err != nil {
			rollback.Run()
		}
	}()

	wd, err := workdir.New(opts.WorkDir, "crtool-restore-", images.CheckpointDir)
	if err != nil {
		return nil, err
	}
	stage, imgDir, logPath := wd.Path, wd.Images, wd.Log("restore.log")
	rollback.Push(func() { wd.KeepOnly(logPath) })
	if err := unpack(ctx, opts.Input, stage, opts.Progress); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(imgDir, "inventory.img")); err != nil {
		return nil, fmt.Errorf("%s: %w: checkpoint/inventory.img is missing", opts.Input, ErrBadArchive)
	}
	md, err := images.ReadMetadata(stage)
	var fg *foreign
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Written by Podman, CRI-O or the kubelet.
		if md, fg, err = foreignMetadata(stage, opts); err != nil {
			return nil, fmt.Errorf("%s: %w", opts.Input, err)
		}
		if opts.Root == "" {
			return nil, fmt.Errorf("%s was not written by crtool: pass --root DIR, the root filesystem of its image (it stays unmodified: the container runs on an overlay of it)", opts.Input)
		}
	case err != nil:
		return nil, fmt.Errorf("%s: %w: %v", opts.Input, ErrBadArchive, err)
	}
	if md.Options.TCPEstablished && !opts.TCPEstablished {
		return nil, fmt.Errorf("%s was dumped with --tcp-established: restore it with --tcp-established", opts.Input)
	}
	name := opts.Name
	if name == "" {
		name = md.Container.Name
	}
	root := opts.Root
	if root == "" {
		root = md.Container.Root
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("root filesystem %s recorded in the archive is not there: pass --root DIR", root)
	}
	if fg != nil {
		// Only a state directory this restore created may be removed
		// on failure: another container may own one of the same name.
		if err := fg.create(md.Container.Name); err != nil {
			return nil, err
		}
		rollback.Push(fg.remove)
		if root, err = fg.prepare(ctx, stage, root, md); err != nil {
			return nil, err
		}
	}

	cg := cgroups.Set(md.Cgroups.Paths)
	if err := checkCgroupsFree(cg); err != nil {
		return nil, err
	}
	created, err := cg.Missing()
	if err != nil {
		return nil, err
	}
	rollback.Push(func() { removeCgroups(cg, created) })

	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	addFile := func(f *os.File) int32 {
		files = append(files, f)
		return criu.FD(len(files) - 1)
	}
	imgFd, err := os.Open(imgDir)
	if err != nil {
		return nil, fmt.Errorf("open image directory: %w", err)
	}
	defer imgFd.Close()

	copts := &rpc.CriuOpts{
		ImagesDirFd:    proto.Int32(int32(imgFd.Fd())),
		LogFile:        proto.String("restore.log"),
		LogLevel:       proto.Int32(4),
		Root:           proto.String(root),
		ManageCgroups:  proto.Bool(true),
		TcpEstablished: proto.Bool(opts.TCPEstablished),
		FileLocks:      proto.Bool(md.Options.FileLocks),
	}
	if err := mapMounts(copts, md, cg); err != nil {
		return nil, err
	}
	net, err := planNetwork(md, opts)
	if err != nil {
		return nil, err
	}
	rollback.Push(net.undo)
	defer net.close()
	if net != nil {
		copts.InheritFd = append(copts.InheritFd, &rpc.InheritFd{Key: proto.String(dump.NetnsKey), Fd: proto.Int32(addFile(net.file))})
		net.file = nil // closed with the other files
	}
	for _, ef := range md.Files {
		f, err := openExternalFile(ef, opts.Log)
		if err != nil {
			return nil, err
		}
		copts.InheritFd = append(copts.InheritFd, &rpc.InheritFd{Key: proto.String(ef.Key), Fd: proto.Int32(addFile(f))})
	}

	var restoredPID int
	req := criu.Request{
		Type:    rpc.CriuReqType_RESTORE,
		Opts:    copts,
		Files:   files,
		LogPath: logPath,
	}
	opts.logf("restoring %s (root %s)", name, root)
	criuStart := time.Now()
	resp, err := bin.Run(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", name, err)
	}
	criuTook := time.Since(criuStart)
	restoredPID = int(resp.GetRestore().GetPid())
	if err := net.afterRestore(); err != nil {
		return nil, err
	}

	// CRIU restores the freezer state it recorded, which is frozen since
	// crtool froze the container for the dump.
	if p, ok := cg["freezer"]; ok {
		if err := thaw("freezer", p); err != nil {
			return nil, err
		}
	} else if p, ok := cg[cgroups.Unified]; ok {
		if err := thaw(cgroups.Unified, p); err != nil {
			return nil, err
		}
	}
	if err := unix.Kill(restoredPID, 0); err != nil {
		return nil, fmt.Errorf("restored pid %d is gone right after the restore: see %s", restoredPID, logPath)
	}
	if opts.PidFile != "" {
		if err := writePidFile(opts.PidFile, restoredPID); err != nil {
			return nil, err
		}
	}
	rollback.Release()
	res = &Result{PID: restoredPID, Name: name, Metadata: md, CRIUTime: criuTook}
	if msgs, err := images.DecodeImageFile(filepath.Join(imgDir, "stats-restore"), images.StatsImage); err == nil && len(msgs) > 0 {
		res.CRIU = msgs[0].(*stats.StatsEntry).GetRestore()
	}
	if opts.KeepImages != "" {
		if err := wd.MoveImages(opts.KeepImages); err != nil {
			opts.logf("%v", err)
		}
	}
	wd.Remove()
	res.Duration = time.Since(start)
	return res, nil
}

// unpack extracts the archive into dir.
func unpack(ctx context.Context, input, dir string, term *os.File) error {
	var r io.Reader = os.Stdin
	total := int64(-1)
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			return fmt.Errorf("open archive: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			total = st.Size()
		}
		r = f
	}
	bar := progress.New(term, "reading "+filepath.Base(input))
	defer bar.Done()
	r = &progress.Reader{R: r, Bar: bar, Total: total}
	if _, err := images.Extract(ctx, r, dir, images.ExtractOptions{}); err != nil {
		return fmt.Errorf("%s: %w: %v", input, ErrBadArchive, err)
	}
	return nil
}

// checkCgroupsFree refuses to restore into cgroups that still hold
// processes: the original container, most likely.
func checkCgroupsFree(cg cgroups.Set) error {
	for h, dir := range cg.Dirs() {
		pids, err := cgroups.Pids(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err
		}
		if len(pids) > 0 {
			return fmt.Errorf("%w: cgroup %s (%s) still holds pid %d: stop the original container first", ErrConflict, cg[h], dir, pids[0])
		}
	}
	return nil
}

// removeCgroups kills what a failed restore left in the container's cgroups
// and removes the cgroups the restore created.
func removeCgroups(cg cgroups.Set, created []string) {
	if p, ok := cg["freezer"]; ok {
		_ = thaw("freezer", p)
	}
	for _, dir := range cg.Dirs() {
		_ = cgroups.Kill(dir, 5*time.Second)
	}
	_ = cgroups.Remove(created)
}

func thaw(h, p string) error {
	dir, err := cgroups.Dir(h, p)
	if err != nil {
		return err
	}
	fr, err := freezer.New(dir)
	if err != nil {
		return err
	}
	return fr.Thaw()
}

// mapMounts tells CRIU where each external mount comes from on this host.
func mapMounts(copts *rpc.CriuOpts, md *images.Metadata, cg cgroups.Set) error {
	for _, m := range md.Mounts {
		src := m.Source
		if m.Kind == images.MountCgroup {
			dir, err := cgroups.Dir(m.Hierarchy, m.CgroupPath)
			if err != nil {
				return fmt.Errorf("cgroup mount %s: %w", m.Key, err)
			}
			// CRIU creates the cgroup, with its recorded properties,
			// before it mounts anything.
			copts.ExtMnt = append(copts.ExtMnt, &rpc.ExtMountMap{Key: proto.String(m.Key), Val: proto.String(dir)})
			continue
		}
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("mount %s of the container comes from %s, which does not exist on this host: create it", m.Key, src)
		}
		copts.ExtMnt = append(copts.ExtMnt, &rpc.ExtMountMap{Key: proto.String(m.Key), Val: proto.String(src)})
	}
	return nil
}

// openExternalFile opens the replacement for a descriptor that led outside
// the container: the same file again, or for a pipe to a supervisor that
// no longer exists, the log file (write ends) or /dev/null.
func openExternalFile(ef images.ExternalFile, logPath string) (*os.File, error) {
	acc := ef.Flags & unix.O_ACCMODE
	switch ef.Kind {
	case images.FilePipe:
		if acc == unix.O_WRONLY && logPath != "" {
			f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				return nil, fmt.Errorf("open --log %s: %w", logPath, err)
			}
			return f, nil
		}
		return os.OpenFile(os.DevNull, os.O_RDWR, 0)
	case images.FileReg:
		flags := acc
		if acc != unix.O_RDONLY {
			// Appending never overwrites what the file got meanwhile.
			flags |= unix.O_APPEND
		}
		f, err := os.OpenFile(ef.Path, flags, 0)
		if err != nil {
			return nil, fmt.Errorf("container descriptor %s leads to %s: %w: create it", ef.Key, ef.Path, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("%w: unknown external file kind %q", ErrBadArchive, ef.Kind)
}

func writePidFile(path string, pid int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}
