package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/freezer"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/cpufeat"
	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/criuimg"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/guardian"
	"github.com/crtool/crtool/internal/ociimage"
	"github.com/crtool/crtool/internal/podman"
	"github.com/crtool/crtool/internal/postcopy"
	"github.com/crtool/crtool/internal/safefs"
	"github.com/crtool/crtool/internal/testpoint"
	"github.com/crtool/crtool/internal/trust"
	"github.com/crtool/crtool/internal/undo"
	"github.com/crtool/crtool/internal/workdir"
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
	// SkipCPUCheck restores even when the checkpoint's processes may run
	// code for CPU features this host lacks.
	SkipCPUCheck bool
	// DryRun checks the archive against this host and stops before
	// anything is created: Result.Plan says what a restore would create,
	// and the error lists every blocker.
	DryRun bool
	// Bridge attaches a rebuilt namespace's veth to this bridge instead of
	// the recorded one; CreateBridge creates it when missing. PeerNetns is
	// where the host end of that veth goes (default: the recorded
	// namespace, or for archives crtool did not write, this host's).
	Bridge       string
	CreateBridge bool
	PeerNetns    string
	// Publish are port mappings to set up besides (and over, by host
	// port) the ones the archive records.
	Publish []format.PortMapping
	// Volumes binds the volume at each mount point (the key) from another
	// host path than the recorded one.
	Volumes map[string]string
	// Progress, when set, is called while the archive is read with the
	// bytes read and the archive's size (-1 for a stream).
	Progress func(done, total int64)
	// Log receives what the container wrote to pipes that led outside it
	// (its stdout and stderr under a supervisor); default /dev/null.
	Log string
	// Logf reports progress (-v); nil discards it.
	Logf func(format string, args ...any)
	// Warnf reports what the user must know even without -v: an undo step
	// that failed, a piece left behind. nil discards it.
	Warnf func(format string, args ...any)
	// AllowHostNamespaces restores a process tree that shares the host's
	// pid, mount, network, UTS or IPC namespace, as its images say.
	AllowHostNamespaces bool
	// AllowHostPath are host files and directories the container may be
	// handed: external files and bind-mount sources the archive names are
	// opened only at or below one of them (/dev/null needs none).
	AllowHostPath []string
	// AllowDevices lets a foreign archive's rootfs-diff.tar create block
	// and character device nodes in the container's root filesystem.
	AllowDevices bool
	// LazyPages restores an archive of crtool dump --lazy-pages: the
	// container resumes at once and its memory arrives from the source's
	// page server (PageServer, default: the address the archive records)
	// while it runs; Result.Transfer tells when all has arrived.
	LazyPages  bool
	PageServer string
	// Cgroup puts the container into this cgroup path, on every
	// controller, instead of the recorded one.
	Cgroup string
}

// Result describes a restored container.
type Result struct {
	PID      int
	Name     string
	Metadata *format.Metadata
	Duration time.Duration
	// CRIU is CRIU's own statistics of the restore (its stats-restore).
	CRIU *stats.RestoreStatsEntry
	// CRIUTime is how long CRIU's restore took.
	CRIUTime time.Duration
	// Plan is what the restore creates (with DryRun: would create).
	Plan *Plan
	// Transfer is the memory still arriving after a post-copy restore;
	// nil otherwise.
	Transfer *Transfer
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

func (o *Options) warnf(format string, args ...any) {
	if o.Warnf != nil {
		o.Warnf(format, args...)
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

// restorer carries one restore through its steps: unpack, describe the
// archive, prepare the root, cgroups, network and descriptors, have CRIU
// restore, and resume the container.
type restorer struct {
	opts     Options
	bin      *criu.Binary
	wd       *workdir.Dir
	log      string
	keptLog  string // where the log goes if the restore fails
	md       *format.Metadata
	fg       *foreign // archives crtool did not write
	name     string
	root     string
	cg       cgroups.Set
	cgMade   []string // cgroup directories this restore created
	net      *netPlan
	imgDir   *os.File
	files    []*os.File // handed to CRIU, see criu.FD
	inherit  []*rpc.InheritFd
	extMnt   []*rpc.ExtMountMap
	pid      int
	criuTook time.Duration
	rollback undo.Stack
	guard    *guardian.Guard
	plan     *Plan

	daemon      *postcopy.Daemon // CRIU's lazy-pages daemon (--lazy-pages)
	restorePipe func() error     // puts fs.pipe-max-size back

	// placed is what the restore puts on the host besides CRIU's work.
	placed
}

// Run restores the archive opts.Input. On failure it removes what it created
// and leaves the archive untouched.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	start := time.Now()
	r := &restorer{opts: opts}
	if err := r.opts.Validate(); err != nil {
		return nil, err
	}
	if r.bin, err = criu.OpenAsRoot(ctx, opts.CRIUPath); err != nil {
		return nil, err
	}
	defer func() {
		r.closeFiles()
		if err != nil {
			r.abort()
		}
		// Committed, or undone above: the guardian has nothing to do.
		r.guard.Done(&r.rollback)
	}()
	// The checks change nothing but the work directory; a dry run ends
	// after them.
	check := []func(context.Context) error{r.unpack, r.describe, r.validate, r.preflight}
	act := []func(context.Context) error{
		r.prepareRoot, r.preparePrivate, r.prepareCgroups, r.prepareNetwork, r.preparePorts, r.prepareFiles, r.prepareLazy, r.restore, r.resume, r.commit,
	}
	for _, step := range check {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	if r.opts.DryRun {
		r.abort()
		return &Result{Name: r.name, Metadata: r.md, Plan: r.plan, Duration: time.Since(start)}, nil
	}
	for _, step := range act {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	r.rollback.Release()
	return r.finish(start), nil
}

// unpack extracts the archive into a new work directory.
func (r *restorer) unpack(ctx context.Context) (err error) {
	// From here on the host changes: a guardian undoes what the journal
	// lists if this process dies. The lock is this run's own: restoring
	// one archive twice (under two names) is fine, and a name taken twice
	// is the pre-flight's to refuse.
	subject, key := r.opts.Input, fmt.Sprintf("restore by crtool pid %d at %d", os.Getpid(), time.Now().UnixNano())
	if r.guard, err = guardian.StartKeyed("restore", subject, key, &r.rollback); err != nil {
		return err
	}
	wd, err := workdir.New(r.opts.WorkDir, "crtool-restore-", format.CheckpointDir)
	if err != nil {
		return err
	}
	r.wd, r.log, r.keptLog = wd, wd.Log("restore.log"), workdir.KeptLog("restore")
	if err := r.rollback.PushRecord("remove work directory "+wd.Path, guardian.KeepLog(wd.Path, r.log, r.keptLog), func() error { return wd.RemoveKeepingLog(r.log, r.keptLog) }); err != nil {
		return err
	}
	verified, err := unpack(ctx, r.opts.Input, wd.Path, r.opts.Progress)
	if err != nil {
		return err
	}
	if verified {
		r.opts.logf("every member matches the archive's manifest")
	}
	// A failed restore keeps restore.log for the error to quote: only
	// CRIU's own, not one the archive brought.
	if err := safefs.RemoveTree(ctx, r.log); err != nil {
		return err
	}
	testpoint.Reach("restore-unpacked")
	if _, err := os.Stat(filepath.Join(wd.Images, format.InventoryImage)); err != nil {
		return errdefs.Newf(errdefs.ErrInvalidArchive, "%s: %s/%s is missing", r.opts.Input, format.CheckpointDir, format.InventoryImage)
	}
	return nil
}

// describe reads crtool.json, or describes an archive Podman, CRI-O or the
// kubelet wrote the same way.
func (r *restorer) describe(ctx context.Context) error {
	md, err := format.ReadMetadata(r.wd.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		cp, err := podman.Decode(r.wd.Path, r.opts.Name, StateDir)
		if err != nil {
			return fmt.Errorf("%s: %w", r.opts.Input, err)
		}
		r.fg, md = &foreign{Checkpoint: cp, dir: &containerDir{path: cp.Dir}, allowDevices: r.opts.AllowDevices}, cp.Metadata
	case err != nil:
		return errdefs.Newf(errdefs.ErrInvalidArchive, "%s: %w", r.opts.Input, err)
	}
	if md.Options.TCPEstablished && !r.opts.TCPEstablished {
		return fmt.Errorf("%s was dumped with --tcp-established: restore it with --tcp-established", r.opts.Input)
	}
	r.md = md
	r.name = r.opts.Name
	if r.name == "" {
		r.name = md.Container.Name
	}
	return nil
}

// checkCPU refuses, before anything is created on the host, a checkpoint
// whose processes may run code for CPU features this host lacks: CRIU
// would restore them, and they would die with SIGILL when they reach it.
func (r *restorer) checkCPU(ctx context.Context) error {
	if r.opts.SkipCPUCheck {
		return nil
	}
	rep, err := cpufeat.CheckImages(criuimg.New(criuimg.Dir(r.wd.Images), format.CheckpointDir+"/"), r.md.CPU)
	if err != nil {
		return fmt.Errorf("%s: %w", r.opts.Input, err)
	}
	for _, w := range rep.Warnings {
		r.opts.warnf("%s", w)
	}
	return rep.Err()
}

// prepareCgroups checks the container's cgroups are free, creates the
// cgroups above them that this host lacks, fits the recorded cpusets to
// this host, and arranges for all the restore creates to go again on
// failure: CRIU's own cgroups first, then the parents, newest first.
func (r *restorer) prepareCgroups(ctx context.Context) error {
	r.cg = r.cgroupSet()
	if err := checkCgroupsFree(r.cg); err != nil {
		return err
	}
	parents, err := cgroups.Prepare(r.cg, &r.rollback)
	if err != nil {
		return err
	}
	warnings, err := cgroups.AdaptImage(r.wd.Images)
	if err != nil {
		return fmt.Errorf("%s: %w", r.opts.Input, err)
	}
	for _, w := range warnings {
		r.opts.warnf("%s", w)
	}
	created, err := r.cg.Missing()
	if err != nil {
		return err
	}
	cg := r.cg
	r.cgMade = append(parents, created...) // parents first, as rm removes them last
	var dirs []string
	for _, d := range cg.Dirs() {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	if err := r.rollback.PushRecord("remove the cgroups the restore created", guardian.RemoveCgroups(created), func() error { return cgroups.Remove(created) }); err != nil {
		return err
	}
	if err := r.rollback.PushRecord("kill what the restore left in the container's cgroups", guardian.KillCgroups(dirs), func() error { return killCgroups(cg) }); err != nil {
		return err
	}
	if r.extMnt, err = mapMounts(r.md, r.policy()); err != nil {
		return err
	}
	return nil
}

// prepareNetwork joins or rebuilds the network namespace.
func (r *restorer) prepareNetwork(ctx context.Context) error {
	net, err := planNetwork(r.md, r.opts, &r.rollback)
	if err != nil {
		return err
	}
	r.net = net
	if net != nil {
		r.inherit = append(r.inherit, r.inheritFd(format.NetnsKey, net.file))
		net.file = nil // closed with the other files
	}
	return nil
}

// prepareFiles opens the replacements of descriptors that led outside.
func (r *restorer) prepareFiles(ctx context.Context) error {
	p := r.policy()
	for i, ef := range r.md.Files {
		f, err := openExternalFile(i, ef, r.opts.Log, p)
		if err != nil {
			return err
		}
		r.inherit = append(r.inherit, r.inheritFd(ef.Key, f))
	}
	return nil
}

// inheritFd hands f to CRIU under key.
func (r *restorer) inheritFd(key string, f *os.File) *rpc.InheritFd {
	r.files = append(r.files, f)
	return &rpc.InheritFd{Key: proto.String(key), Fd: proto.Int32(criu.FD(len(r.files) - 1))}
}

func (r *restorer) closeFiles() {
	for _, f := range r.files {
		f.Close()
	}
	r.files = nil
	if r.imgDir != nil {
		r.imgDir.Close()
	}
	r.net.close()
}

// restore has CRIU restore the processes, then lifts the network locks.
func (r *restorer) restore(ctx context.Context) error {
	imgDir, err := os.Open(r.wd.Images)
	if err != nil {
		return fmt.Errorf("open image directory: %w", err)
	}
	r.imgDir = imgDir
	req := criu.Request{
		Type:    rpc.CriuReqType_RESTORE,
		Opts:    criuRestoreOptions(int32(imgDir.Fd()), r.root, r.md, r.opts, r.extMnt, r.inherit),
		Files:   r.files,
		LogPath: r.log,
		KeptLog: r.keptLog,
		Notify:  testpoint.CRIU("restore-criu", "pre-resume"),
		// A half-restored tree is removed if crtool dies: CRIU goes first.
		DieWithCaller: true,
	}
	r.lazyOptions(&req)
	r.cgroupOptions(req.Opts)
	r.opts.logf("restoring %s (root %s)", r.name, r.root)
	start := time.Now()
	resp, err := r.bin.Run(ctx, req)
	if err != nil {
		return fmt.Errorf("restore %s: %w", r.name, err)
	}
	r.criuTook = time.Since(start)
	r.pid = int(resp.GetRestore().GetPid())
	if err := r.net.afterRestore(); err != nil {
		return err
	}
	testpoint.Reach("restore-restored")
	return nil
}

// resume thaws the container: CRIU restores the freezer state it recorded,
// which is frozen since crtool froze the container for the dump.
func (r *restorer) resume(ctx context.Context) error {
	if p, ok := r.cg["freezer"]; ok {
		if err := thaw("freezer", p); err != nil {
			return err
		}
	} else if p, ok := r.cg[cgroups.Unified]; ok {
		if err := thaw(cgroups.Unified, p); err != nil {
			return err
		}
	}
	if err := unix.Kill(r.pid, 0); err != nil {
		return fmt.Errorf("restored pid %d is gone right after the restore: see %s", r.pid, r.keptLog)
	}
	if r.opts.PidFile != "" {
		return writePidFile(r.opts.PidFile, r.pid)
	}
	return nil
}

// finish reports the restore and removes the work directory.
func (r *restorer) finish(start time.Time) *Result {
	res := &Result{PID: r.pid, Name: r.name, Metadata: r.md, CRIUTime: r.criuTook, Plan: r.plan}
	if st, err := criuimg.New(criuimg.Dir(r.wd.Images), "").RestoreStats(format.StatsRestore); err == nil {
		res.CRIU = st
	}
	if r.daemon != nil {
		// The daemon reads the images until the last page is in.
		r.lazyTransfer(res)
		res.Duration = time.Since(start)
		return res
	}
	if r.opts.KeepImages != "" {
		if err := r.wd.MoveImages(r.opts.KeepImages); err != nil {
			r.opts.warnf("--keep-images: %v", err)
		}
	}
	if err := r.wd.Remove(); err != nil {
		r.opts.warnf("%v", err)
	}
	res.Duration = time.Since(start)
	return res
}

// criuRestoreOptions builds CRIU's restore request.
func criuRestoreOptions(imgFd int32, root string, md *format.Metadata, o Options, extMnt []*rpc.ExtMountMap, inherit []*rpc.InheritFd) *rpc.CriuOpts {
	return &rpc.CriuOpts{
		ImagesDirFd:    proto.Int32(imgFd),
		LogFile:        proto.String("restore.log"),
		LogLevel:       proto.Int32(4),
		Root:           proto.String(root),
		ManageCgroups:  proto.Bool(true),
		TcpEstablished: proto.Bool(o.TCPEstablished),
		FileLocks:      proto.Bool(md.Options.FileLocks),
		ExtMnt:         extMnt,
		InheritFd:      inherit,
	}
}

// unpack extracts the archive into dir.
func unpack(ctx context.Context, input, dir string, progress func(done, total int64)) (verified bool, err error) {
	// A read of stdin blocks until the next byte arrives; Ctrl-C must end
	// the restore at once.
	var r io.Reader = &cancelableReader{ctx: ctx, r: os.Stdin}
	total := int64(-1)
	verify := func() error { return nil }
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			return false, fmt.Errorf("open archive: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			total = st.Size()
		}
		r = f
		// A checkpoint image (crtool image, Podman's --create-image)
		// carries the archive as its one layer.
		if ociimage.IsImage(f) {
			layer, err := ociimage.OpenLayer(f, total)
			if err != nil {
				return false, fmt.Errorf("%s: %w", input, err)
			}
			r, total, verify = layer, layer.Size(), layer.Close
		}
	}
	if progress != nil {
		r = &countingReader{r: r, total: total, report: progress}
	}
	// A crtool archive's manifest is checked as the archive is read, so a
	// damaged or modified member is refused before anything uses it.
	st, err := archive.Extract(ctx, r, dir, archive.ExtractOptions{})
	if err != nil {
		return false, fmt.Errorf("%s: %w", input, err)
	}
	if err := verify(); err != nil {
		return false, fmt.Errorf("%s: %w", input, err)
	}
	return st.Verified, nil
}

// cancelableReader returns ctx's error as soon as ctx is done, even while
// a read is blocked; that read finishes in the background, and its data is
// dropped, as the restore has ended.
type cancelableReader struct {
	ctx context.Context
	r   io.Reader
	buf []byte // reused: a read that returned is no longer using it
}

func (c *cancelableReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	type result struct {
		n   int
		err error
	}
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	buf := c.buf[:len(p)]
	done := make(chan result, 1)
	go func() {
		n, err := c.r.Read(buf)
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		copy(p, buf[:res.n])
		return res.n, res.err
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	}
}

// countingReader reports the bytes read so far to a progress callback.
type countingReader struct {
	r      io.Reader
	done   int64
	total  int64
	report func(done, total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.done += int64(n)
	c.report(c.done, c.total)
	return n, err
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
			return errdefs.Newf(errdefs.ErrConflict, "cgroup %s (%s) still holds pid %d: stop the original container first", cg[h], dir, pids[0])
		}
	}
	return nil
}

// killCgroups kills what a failed restore left in the container's cgroups.
func killCgroups(cg cgroups.Set) error {
	var errs []error
	if p, ok := cg["freezer"]; ok {
		if err := thaw("freezer", p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, dir := range cg.Dirs() {
		if err := cgroups.Kill(dir, 5*time.Second); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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

// mapMounts says where each external mount of the container comes from on
// this host: a bind source only where p allows it, with symlinks resolved
// so that CRIU mounts what was checked.
func mapMounts(md *format.Metadata, p trust.Policy) ([]*rpc.ExtMountMap, error) {
	var out []*rpc.ExtMountMap
	for i, m := range md.Mounts {
		var src string
		if m.Kind == format.MountCgroup {
			// CRIU creates the cgroup, with its recorded properties,
			// before it mounts anything.
			dir, err := cgroups.Dir(m.Hierarchy, m.CgroupPath)
			if err != nil {
				return nil, fmt.Errorf("cgroup mount %q: %w", m.Key, err)
			}
			src = dir
		} else {
			var err error
			if src, err = p.HostPath(fmt.Sprintf("externalMounts[%d].source", i), m.Source); err != nil {
				return nil, err
			}
			if _, err := os.Stat(src); err != nil {
				return nil, fmt.Errorf("mount %q of the container comes from %s, which does not exist on this host: create it", m.Key, src)
			}
		}
		out = append(out, &rpc.ExtMountMap{Key: proto.String(m.Key), Val: proto.String(src)})
	}
	return out, nil
}

// openExternalFile opens the replacement for a descriptor that led outside
// the container: the same file again where p allows it, or for a pipe to
// a supervisor that no longer exists, the log file (write ends) or
// /dev/null.
func openExternalFile(i int, ef format.ExternalFile, logPath string, p trust.Policy) (*os.File, error) {
	acc := ef.Flags & unix.O_ACCMODE
	switch ef.Kind {
	case format.FilePipe:
		if acc == unix.O_WRONLY && logPath != "" {
			f, err := openNoFollow(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
			if err != nil {
				return nil, fmt.Errorf("open --log %s: %w", logPath, err)
			}
			return f, nil
		}
		return os.OpenFile(os.DevNull, os.O_RDWR, 0)
	case format.FileReg:
		f, err := p.OpenFile(fmt.Sprintf("externalFiles[%d].path", i), ef.Path, ef.Flags)
		if err != nil {
			return nil, fmt.Errorf("container descriptor %s: %w", ef.Key, err)
		}
		return f, nil
	}
	return nil, errdefs.Newf(errdefs.ErrInvalidArchive, "externalFiles[%d].kind %q is not a file kind crtool knows", i, ef.Kind)
}

// openNoFollow opens a file the operator named (--log, --pid-file)
// without following a symlink in its place, which another user of a shared
// directory could plant to have root write elsewhere.
func openNoFollow(path string, flags int) (*os.File, error) {
	return os.OpenFile(path, flags|unix.O_NOFOLLOW, 0o600)
}

// writePidFile writes the pid to a new file beside path and renames it
// over path: the rename replaces a symlink at path instead of following it,
// and the new file is created exclusively.
func writePidFile(path string, pid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	_, err = tmp.WriteString(strconv.Itoa(pid))
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}
