package dump

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/freezer"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/cpufeat"
	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/criuimg"
	"github.com/crtool/crtool/internal/guardian"
	"github.com/crtool/crtool/internal/network"
	"github.com/crtool/crtool/internal/podman"
	"github.com/crtool/crtool/internal/postcopy"
	"github.com/crtool/crtool/internal/testpoint"
	"github.com/crtool/crtool/internal/undo"
	"github.com/crtool/crtool/internal/workdir"
)

// Version is crtool's version, recorded in every archive.
var Version = "dev"

// Options configure a dump.
type Options struct {
	PID            int
	Output         string // archive path, or "-" for stdout
	Compression    archive.Compression
	LeaveRunning   bool
	TCPEstablished bool
	KeepImages     string // copy CRIU's images here after a successful dump
	WorkDir        string // parent of the temporary image directory
	CRIUPath       string
	Name           string // container name recorded in the archive
	Image          string // image the root filesystem comes from
	ImageID        string // its ID; default: looked up in Podman's store
	// RootfsBase is the image's unmodified root filesystem, to record the
	// container's changes to it (rootfs-diff.tar, deleted.files).
	RootfsBase string
	// PodmanNetwork is the Podman network an import attaches the
	// container to (config.dump's newNetworks, network.status's key).
	PodmanNetwork string
	// WithRootfs puts the whole root filesystem into the archive.
	WithRootfs bool
	// ExportVolumes puts the content of the container's volumes (bind
	// mounts of host paths) into the archive.
	ExportVolumes bool
	// Publish are port mappings to record besides (and over, by host
	// port) the ones Podman published for the container.
	Publish       []format.PortMapping
	RuntimeRoots  []string
	FreezeTimeout time.Duration
	// StagePages has CRIU write the memory pages into the work directory,
	// to be archived with the other images, instead of sending them
	// straight into the archive (see pageStream). Output "-" and
	// KeepImages stage them anyway.
	StagePages bool
	// LazyPages makes a post-copy dump: the archive holds everything but
	// the container's private memory, which the dump then serves on
	// PageServer (ADDRESS:PORT) to `crtool restore --lazy-pages`.
	LazyPages  bool
	PageServer string
	// Logf reports progress (-v); nil discards it.
	Logf func(format string, args ...any)
	// Warnf reports what the user must know even without -v: an undo step
	// that failed, a piece left behind. nil discards it.
	Warnf func(format string, args ...any)
	// Infof reports what the user needs to act on that is no problem
	// (where a lazy dump serves its pages); nil discards it.
	Infof func(format string, args ...any)
	// Progress, when set, is called while the archive is written with the
	// bytes of content done and the total.
	Progress func(done, total int64)
}

// Result describes a finished dump.
type Result struct {
	Path     string
	Size     int64
	Metadata *format.Metadata
	// CRIU is CRIU's own statistics of the dump (its stats-dump).
	CRIU *stats.DumpStatsEntry
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

func (o *Options) infof(format string, args ...any) {
	if o.Infof != nil {
		o.Infof(format, args...)
	}
}

func (o *Options) warnf(format string, args ...any) {
	if o.Warnf != nil {
		o.Warnf(format, args...)
	}
}

// Validate checks the options before anything is touched.
func (o *Options) Validate() error {
	if o.PID <= 0 {
		return errors.New("--pid is required: give the PID of the container's init (runc state ID shows it)")
	}
	if o.Output == "" {
		return errors.New("-f/--export is required: name the archive to write (for example web.tar.gz)")
	}
	if o.Output != "-" {
		if st, err := os.Stat(o.Output); err == nil && st.IsDir() {
			return fmt.Errorf("%s is a directory: name the archive file to write", o.Output)
		}
		dir := filepath.Dir(o.Output)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("directory %s of %s does not exist: create it first", dir, o.Output)
		}
	}
	switch {
	case o.LazyPages && o.PageServer == "":
		return errors.New("--lazy-pages needs --page-server ADDRESS:PORT, where the destination fetches the memory")
	case !o.LazyPages && o.PageServer != "":
		return errors.New("--page-server serves memory only with --lazy-pages: add it, or drop --page-server")
	case o.LazyPages && o.LeaveRunning:
		return errors.New("--lazy-pages and --leave-running cannot be combined: the source stays frozen until the destination has its memory")
	}
	if o.LazyPages {
		if err := postcopy.CheckListenAddress(o.PageServer); err != nil {
			return err
		}
	}
	if o.KeepImages != "" {
		if entries, err := os.ReadDir(o.KeepImages); err == nil && len(entries) > 0 {
			return fmt.Errorf("--keep-images %s is not empty: name a new or empty directory", o.KeepImages)
		}
	}
	if o.RootfsBase != "" {
		if st, err := os.Stat(o.RootfsBase); err != nil || !st.IsDir() {
			return fmt.Errorf("--rootfs-base %s is not a directory: give the image's unmodified root filesystem", o.RootfsBase)
		}
	}
	if o.FreezeTimeout <= 0 {
		o.FreezeTimeout = 10 * time.Second
	}
	if o.RuntimeRoots == nil {
		o.RuntimeRoots = DefaultRuntimeRoots
	}
	return nil
}

// dumper carries one dump through its steps: prepare, freeze, checkpoint,
// pack, and finally stop (or thaw) the container.
type dumper struct {
	opts     Options
	bin      *criu.Binary
	c        *container
	mounts   *mountTable
	ext      []format.ExternalMount
	spec     []byte
	wd       *workdir.Dir
	log      string
	keptLog  string // where the log goes if the dump fails
	fr       *freezer.Freezer
	thawed   bool
	rollback undo.Stack
	guard    *guardian.Guard

	// netns is the container's network namespace, held open so that it can
	// be unlocked and cleaned after its processes are gone; nil when the
	// container shares the host's.
	netns     *os.File
	lock      *network.Lock
	criuLocks []string // CRIU's own lock tables present before the dump
	fds       []fdInfo
	network   *format.Config
	captured  chan error  // the network capture running beside CRIU
	pages     *pageStream // CRIU's pages on their way into the archive
	lazy      *lazyServe  // the page server of a post-copy dump
	// tempGuarded: the guardian knows the temporary archive's name.
	tempGuarded bool
	files       []format.ExternalFile
	image       imageRef
	podman      *podmanInfo // nil unless Podman started the container
	ports       []format.PortMapping
	// rootFromImage is set once the root filesystem's changes to its
	// image are in the archive.
	rootFromImage bool
	md            *format.Metadata

	start, frozenAt      time.Time
	freezeTook, criuTook time.Duration
	frozenFor, writeTook time.Duration
}

// Run dumps the container whose init is opts.PID into opts.Output. The
// container is frozen before CRIU runs and stays frozen until the archive is
// on disk; it is then killed, or thawed with LeaveRunning. If anything fails
// or ctx is cancelled, the container is thawed and keeps running, its
// network unlocked, and no file exists under opts.Output.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	d := &dumper{opts: opts, start: time.Now()}
	if err := d.opts.Validate(); err != nil {
		return nil, err
	}
	if d.bin, err = criu.OpenAsRoot(ctx, opts.CRIUPath); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			d.abort()
		}
		// Committed, or undone above: the guardian has nothing to do.
		d.guard.Done(&d.rollback)
		if d.netns != nil {
			d.netns.Close()
		}
	}()
	steps := []func(context.Context) error{d.prepare, d.freeze, d.inspectFrozen, d.checkpoint, d.pack}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	// The archive is safe on disk: from here on the dump commits.
	d.rollback.Release()
	return d.finish()
}

// prepare learns what the dump needs before anything is changed.
func (d *dumper) prepare(ctx context.Context) (err error) {
	if d.image, err = resolveImage(ctx, d.opts.Image, d.opts.ImageID); err != nil {
		return err
	}
	c, err := inspectContainer(d.opts.PID, d.opts.RuntimeRoots)
	if err != nil {
		return err
	}
	d.c = c
	// The lock keeps other crtools off this container before anything is
	// looked at closely; from the first change to the host on, a guardian
	// undoes what the journal lists if this process dies.
	if d.guard, err = guardian.Start("dump", c.freezerDir, &d.rollback); err != nil {
		return err
	}
	if d.mounts, err = readMounts(c.pid); err != nil {
		return err
	}
	if c.root, err = rootPath(d.mounts); err != nil {
		return err
	}
	if d.ext, err = externalMounts(d.mounts); err != nil {
		return err
	}
	markPrivate(d.ext, d.opts.ExportVolumes)
	if err := d.fromPodman(ctx); err != nil {
		return err
	}
	if _, d.spec, err = specFor(c, d.mounts, d.ext); err != nil {
		return err
	}
	if d.fr, err = freezer.New(c.freezerDir); err != nil {
		return err
	}
	if st, err := d.fr.State(); err != nil {
		return err
	} else if st != freezer.Thawed {
		return fmt.Errorf("container cgroup %s is %s (paused): resume it before dumping", c.freezerDir, strings.ToLower(string(st)))
	}
	if !c.namespaces["net"].Shared {
		if d.netns, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", c.pid)); err != nil {
			return fmt.Errorf("network namespace of pid %d: %w", c.pid, err)
		}
		if d.criuLocks, err = network.Tables(d.netnsPath(), network.CRIUTablePrefix); err != nil {
			return err
		}
	}
	if d.wd, err = workdir.New(d.opts.WorkDir, "crtool-dump-", format.CheckpointDir); err != nil {
		return err
	}
	d.log, d.keptLog = d.wd.Log("dump.log"), workdir.KeptLog("dump")
	if err := d.rollback.PushRecord("remove work directory "+d.wd.Path, guardian.KeepLog(d.wd.Path, d.log, d.keptLog), func() error { return d.wd.RemoveKeepingLog(d.log, d.keptLog) }); err != nil {
		return err
	}
	testpoint.Reach("dump-prepared")
	if err := os.Mkdir(d.wd.Images, 0o700); err != nil {
		return fmt.Errorf("create image directory: %w", err)
	}
	return nil
}

// netnsPath names the held network namespace for calls that take a path.
func (d *dumper) netnsPath() string {
	return fmt.Sprintf("/proc/self/fd/%d", d.netns.Fd())
}

// freeze locks the network (for established connections) and freezes the
// cgroup; both are undone if a later step fails.
func (d *dumper) freeze(ctx context.Context) error {
	if d.opts.TCPEstablished && d.netns != nil {
		// The lock comes first: once CRIU has dumped the connections, the
		// kernel must not acknowledge anything more for them.
		lock, err := network.LockNamespace(d.netnsPath(), lockID(d.c))
		if err != nil {
			return err
		}
		d.lock = lock
		ns := fmt.Sprintf("/proc/%d/ns/net", d.c.pid)
		if err := d.rollback.PushRecord("unlock network of pid "+strconv.Itoa(d.c.pid), guardian.DeleteTable(ns, lock.Table), d.unlock); err != nil {
			return err
		}
		// CRIU's own lock, should CRIU die with it in place.
		if err := d.rollback.PushRecord("remove CRIU's network lock of pid "+strconv.Itoa(d.c.pid), guardian.DeleteTablesExcept(ns, network.CRIUTablePrefix, d.criuLocks), func() error { return nil }); err != nil {
			return err
		}
	}
	// The thaw is journaled before the freeze: a crtool killed while the
	// kernel freezes must not leave the cgroup freezing.
	if err := d.rollback.PushRecord("thaw "+d.c.freezerDir, guardian.Thaw(d.c.freezerDir), d.thaw); err != nil {
		return err
	}
	d.opts.logf("freezing %s", d.c.freezerDir)
	took, err := d.fr.Freeze(ctx, d.opts.FreezeTimeout)
	if err != nil {
		return err
	}
	d.freezeTook, d.frozenAt = took, time.Now()
	testpoint.Reach("dump-frozen")
	d.opts.logf("froze %s in %v", d.c.freezerDir, took)
	return nil
}

// unlock lifts crtool's lock and any lock a failed CRIU left behind, so the
// container's connections carry on.
func (d *dumper) unlock() error {
	var errs []error
	if err := d.lock.Unlock(); err != nil {
		errs = append(errs, err)
	}
	d.lock = nil
	if d.netns == nil {
		return errors.Join(errs...)
	}
	now, err := network.Tables(d.netnsPath(), network.CRIUTablePrefix)
	if err != nil {
		errs = append(errs, err)
	}
	for _, t := range now {
		if !slices.Contains(d.criuLocks, t) {
			if err := network.DeleteTable(d.netnsPath(), t); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (d *dumper) thaw() error {
	if d.thawed {
		return nil
	}
	d.thawed = true
	if err := d.fr.Thaw(); err != nil {
		return fmt.Errorf("thaw %s: %w", d.c.freezerDir, err)
	}
	return nil
}

// inspectFrozen records what can only be read reliably while every task is
// frozen: descriptors, the network and its sockets.
func (d *dumper) inspectFrozen(ctx context.Context) error {
	pids, err := cgroups.Pids(d.c.freezerDir)
	if err != nil {
		return err
	}
	if d.fds, err = scanFds(pids); err != nil {
		return err
	}
	scope, err := d.fdScope(pids)
	if err != nil {
		return err
	}
	if d.files, err = externalFiles(d.fds, scope); err != nil {
		return err
	}
	if err := writeDescriptors(d.wd.Images, stdioOf(d.c.pid, d.fds)); err != nil {
		return err
	}
	if d.netns == nil {
		return nil
	}
	if !d.opts.TCPEstablished {
		// CRIU would fail on them with a cryptic error: say it first.
		socks, err := network.SocketsOf(d.netnsPath())
		if err != nil {
			return err
		}
		if conns := connections(&format.Config{Sockets: socks}, d.fds); len(conns) > 0 {
			s := conns[0]
			return fmt.Errorf("%w (%s -> %s, %d in all): use --tcp-established or close them", ErrTCPEstablished, s.Local, s.Remote, len(conns))
		}
	}
	// The full capture reads hundreds of sysctls; it runs while CRIU
	// dumps, both only reading the frozen namespace.
	path := d.netnsPath()
	d.captured = make(chan error, 1)
	go func() {
		cfg, err := network.Capture(path)
		d.network = cfg
		d.captured <- err
	}()
	return nil
}

// checkpoint has CRIU dump the frozen tree.
func (d *dumper) checkpoint(ctx context.Context) error {
	imgFd, err := os.Open(d.wd.Images)
	if err != nil {
		return fmt.Errorf("open image directory: %w", err)
	}
	defer imgFd.Close()
	req := criu.Request{
		Type:    rpc.CriuReqType_DUMP,
		Opts:    criuDumpOptions(d.c, int32(imgFd.Fd()), d.ext, d.files, d.opts),
		LogPath: d.log,
		KeptLog: d.keptLog,
		Notify:  testpoint.CRIU("dump-criu", "post-dump"),
		// Should crtool die, the guardian waits for CRIU to abort by
		// itself before it thaws and unlocks: CRIU takes the connections
		// out of repair mode on its way out.
		Started: func(pid int) error {
			return d.rollback.PushRecord("wait for CRIU", guardian.WaitExit(pid), func() error { return nil })
		},
	}
	switch {
	case d.opts.LazyPages:
		if err := d.startLazy(ctx, &req); err != nil {
			return err
		}
	case d.streamsPages():
		if err := d.startPages(ctx, &req); err != nil {
			return err
		}
	}
	criuStart := time.Now()
	_, err = d.bin.Run(ctx, req)
	if d.pages != nil {
		err = d.pagesDone(err)
	}
	if d.lazy != nil {
		err = d.lazyDone(err)
	}
	if d.captured != nil {
		if cerr := <-d.captured; cerr != nil && err == nil {
			err = cerr
		}
		d.captured = nil
	}
	if err != nil {
		return fmt.Errorf("dump pid %d: %w", d.c.pid, err)
	}
	d.criuTook = time.Since(criuStart)
	d.opts.logf("CRIU dumped pid %d in %v", d.c.pid, d.criuTook)
	if d.opts.LeaveRunning {
		// The images are complete: a container that cannot be thawed or
		// unlocked now is a failed dump, and the rollback retries both.
		if err := errors.Join(d.thaw(), d.unlock()); err != nil {
			d.thawed = false
			return err
		}
		d.frozenFor = time.Since(d.frozenAt)
	}
	return nil
}

// pack writes the metadata and the archive.
func (d *dumper) pack(ctx context.Context) (err error) {
	if d.lazy != nil && d.lazy.packed {
		return nil
	}
	md, cfgJSON, err := d.metadata()
	if err != nil {
		return err
	}
	if err := stageMetadata(d.wd.Path, d.wd.Images, d.spec, cfgJSON, d.network, d.opts.PodmanNetwork); err != nil {
		return err
	}
	if err := d.rootfsChanges(ctx); err != nil {
		return err
	}
	if err := savePrivate(ctx, d.wd.Path, d.ext); err != nil {
		return err
	}
	if d.opts.WithRootfs {
		if err := d.wholeRootfs(ctx); err != nil {
			return err
		}
	}
	md.Container.RootFromImage = d.rootFromImage
	if err := format.WriteMetadata(d.wd.Path, md); err != nil {
		return err
	}
	writeStart := time.Now()
	if err := d.guardTempArchive(); err != nil {
		return err
	}
	progress := d.opts.Progress
	if testpoint.Active("dump-writing") {
		progress = func(done, total int64) {
			if done > 0 {
				testpoint.Reach("dump-writing")
			}
		}
	}
	if err := d.writeArchive(ctx, progress); err != nil {
		return fmt.Errorf("write %s: %w", d.opts.Output, err)
	}
	if d.opts.Output != "-" {
		if err := d.rollback.PushRecord("remove "+d.opts.Output, guardian.Remove(d.opts.Output), func() error { return os.Remove(d.opts.Output) }); err != nil {
			return err
		}
		testpoint.Reach("dump-written")
	}
	d.writeTook = time.Since(writeStart)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dump interrupted: %w", err)
	}
	d.md = md
	return nil
}

// guardTempArchive has the guardian remove the temporary archive a killed
// crtool left next to the target; once is enough.
func (d *dumper) guardTempArchive() error {
	if d.opts.Output == "-" || d.tempGuarded {
		return nil
	}
	d.tempGuarded = true
	tmp := filepath.Join(filepath.Dir(d.opts.Output), "."+filepath.Base(d.opts.Output)+archive.TempSuffix+"*")
	return d.rollback.PushRecord("remove temporary archives "+tmp, guardian.RemoveGlob(tmp), func() error { return nil })
}

// finish stops the container (unless it keeps running) and cleans up.
func (d *dumper) finish() (*Result, error) {
	defer func() {
		if err := d.wd.Remove(); err != nil {
			d.opts.warnf("%v", err)
		}
	}()
	if d.opts.KeepImages != "" {
		if err := d.wd.MoveImages(d.opts.KeepImages); err != nil {
			d.opts.warnf("--keep-images: %v", err)
		}
	}
	if !d.opts.LeaveRunning {
		err := d.stop()
		d.frozenFor = time.Since(d.frozenAt)
		if err != nil {
			return nil, fmt.Errorf("archive %s is complete, but stopping the container failed: %w", d.opts.Output, err)
		}
	}
	md := d.md
	md.Stats.FrozenTime = d.frozenFor.Microseconds()
	md.Stats.CRIUTime = d.criuTook.Microseconds()
	md.Stats.WriteTime = d.writeTook.Microseconds()
	md.Stats.TotalTime = time.Since(d.start).Microseconds()
	res := &Result{Path: d.opts.Output, Metadata: md, CRIU: d.criuStats()}
	if st, err := os.Stat(d.opts.Output); err == nil && d.opts.Output != "-" {
		res.Size = st.Size()
	}
	return res, nil
}

// stop kills the frozen container without a trace on the network: its TCP
// connections are put into repair mode first, so closing them sends
// neither FIN nor reset, and whatever remains is destroyed. The network
// lock stays, and the links lead nowhere, until a restore lifts them: a
// peer's packets must meet silence, not a reset from a kernel that no
// longer knows the connection.
func (d *dumper) stop() error {
	var repaired []int
	if d.opts.TCPEstablished && d.network != nil {
		var err error
		if repaired, err = repairTCP(connections(d.network, d.fds), d.fds); err != nil {
			d.opts.warnf("%v", err)
		}
	}
	err := stopContainer(d.fr, d.c.freezerDir)
	for _, fd := range repaired {
		unix.Close(fd)
	}
	if d.opts.TCPEstablished && d.network != nil {
		if n, derr := network.DestroyTCP(d.netnsPath(), d.network.Sockets); derr != nil {
			d.opts.warnf("%v", derr)
		} else if n > 0 {
			d.opts.logf("destroyed %d leftover TCP sockets", n)
		}
		// The namespace may be deleted next, and the kernel unhooks the
		// lock before it removes the links: take them down meanwhile.
		if qerr := network.Quiesce(d.netnsPath(), d.network); qerr != nil {
			d.opts.warnf("%v", qerr)
		}
	}
	return err
}

// metadata builds crtool.json and config.dump.
func (d *dumper) metadata() (*format.Metadata, []byte, error) {
	c, opts := d.c, d.opts
	hostname, _ := os.Hostname()
	id, name := containerIdentity(c, opts.Name, hostname)
	md := &format.Metadata{
		Version:     format.MetadataVersion,
		CreatedBy:   "crtool " + Version,
		Checkpoint:  time.Now().UTC(),
		Hostname:    hostname,
		Kernel:      criu.KernelRelease(),
		CRIUVersion: d.bin.Version.String(),
		CPU:         hostCPU(),
		Container: format.ContainerInfo{
			ID: id, Name: name, Runtime: c.runtime.Name, Bundle: c.runtime.Bundle,
			Root: c.root, PID: c.pid, Image: d.image.Name, ImageID: d.image.ID,
		},
		Cgroups: format.CgroupInfo{
			Layout: string(cgroups.DetectLayout()), Paths: c.cgroups, Freezer: c.freezerDir,
		},
		Namespaces: c.namespaces,
		Mounts:     d.ext,
		Files:      d.files,
		Network:    d.network,
		Ports:      d.ports,
		Options: format.DumpOptions{
			LeaveRunning: opts.LeaveRunning, TCPEstablished: opts.TCPEstablished, FileLocks: true,
		},
		Stats: format.DumpStats{
			FreezingTime: d.freezeTook.Microseconds(),
			FrozenTime:   d.frozenSoFar().Microseconds(),
			CRIUTime:     d.criuTook.Microseconds(),
			TotalTime:    time.Since(d.start).Microseconds(),
		},
	}
	if d.lock != nil {
		md.NetworkLock = d.lock.Table
	}
	var spec specs.Spec
	if err := json.Unmarshal(d.spec, &spec); err != nil {
		return nil, nil, fmt.Errorf("spec: %w", err)
	}
	if spec.Process != nil {
		md.Container.Command = spec.Process.Args
	}
	cfg, err := podman.ConfigDump(podman.Container{
		Spec: &spec, ID: id, Name: name, Image: d.image.Name, ImageID: d.image.ID,
		Runtime: c.runtime.Name, OwnNetNS: !c.namespaces["net"].Shared,
		Network: opts.PodmanNetwork, CreatedAt: processStart(c.pid), Ports: d.ports,
	})
	if err != nil {
		return nil, nil, err
	}
	return md, cfg, nil
}

// criuStats reads CRIU's statistics of the dump from the staging directory.
func (d *dumper) criuStats() *stats.DumpStatsEntry {
	st, err := criuimg.New(criuimg.Dir(d.wd.Path), "").DumpStats(format.StatsDumpFile)
	if err != nil {
		return nil
	}
	return st
}

// frozenSoFar is how long the container has been frozen: without
// --leave-running it still is while the archive is written.
func (d *dumper) frozenSoFar() time.Duration {
	if d.thawed {
		return d.frozenFor
	}
	return time.Since(d.frozenAt)
}

// lockID names crtool's network lock after the container's init.
func lockID(c *container) string {
	return fmt.Sprintf("%d-%d", c.pid, processStart(c.pid).Unix())
}

// criuDumpOptions builds CRIU's dump request.
func criuDumpOptions(c *container, imgFd int32, mounts []format.ExternalMount, files []format.ExternalFile, o Options) *rpc.CriuOpts {
	opts := &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(imgFd),
		Pid:         proto.Int32(int32(c.pid)),
		LogFile:     proto.String("dump.log"),
		LogLevel:    proto.Int32(4),
		// crtool stops the container itself, once the archive is safe.
		LeaveRunning:   proto.Bool(true),
		TcpEstablished: proto.Bool(o.TCPEstablished),
		FileLocks:      proto.Bool(true),
		ManageCgroups:  proto.Bool(true),
		FreezeCgroup:   proto.String(c.freezerDir),
		NetworkLock:    rpc.CriuNetworkLockMethod_NFTABLES.Enum(),
	}
	for _, m := range mounts {
		opts.ExtMnt = append(opts.ExtMnt, &rpc.ExtMountMap{Key: proto.String(m.Key), Val: proto.String(m.Key)})
	}
	if ns := c.namespaces["net"]; !ns.Shared {
		opts.External = append(opts.External, fmt.Sprintf("net[%d]:%s", ns.Inode, NetnsKey))
	}
	for _, f := range files {
		if f.Kind == format.FileReg {
			opts.External = append(opts.External, f.Key)
		}
	}
	return opts
}

// DefaultPodmanNetwork is the network under which network.status lists the
// container's interfaces, and that Podman's import attaches it to: Podman's
// default network.
const DefaultPodmanNetwork = "podman"

// NetnsKey is the name under which the container's network namespace is
// external to CRIU; restore passes the namespace under the same key.
const NetnsKey = "extRootNetNS"

// stageMetadata writes the Podman-layout members next to the images.
func stageMetadata(stage, imgDir string, specJSON, cfgJSON []byte, network *format.Config, podmanNetwork string) error {
	if err := os.WriteFile(filepath.Join(stage, format.SpecDumpFile), specJSON, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", format.SpecDumpFile, err)
	}
	if err := os.WriteFile(filepath.Join(stage, format.ConfigDumpFile), cfgJSON, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", format.ConfigDumpFile, err)
	}
	status := []byte("{}")
	if network != nil {
		b, err := json.MarshalIndent(podman.NetworkStatus(network, podmanNetwork), "", "  ")
		if err != nil {
			return fmt.Errorf("encode %s: %w", format.NetworkStatusFile, err)
		}
		status = b
	}
	if err := os.WriteFile(filepath.Join(stage, format.NetworkStatusFile), status, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", format.NetworkStatusFile, err)
	}
	// CRIU writes its statistics into its work directory; Podman keeps
	// them at the top of the archive.
	stats := filepath.Join(imgDir, format.StatsDumpFile)
	if _, err := os.Stat(stats); err == nil {
		if err := os.Rename(stats, filepath.Join(stage, format.StatsDumpFile)); err != nil {
			return fmt.Errorf("move %s: %w", format.StatsDumpFile, err)
		}
	}
	return nil
}

// stopContainer kills every task of the frozen container, then thaws the
// cgroup so the kills are delivered, and waits until the cgroup is empty.
func stopContainer(fr *freezer.Freezer, dir string) error {
	pids, err := cgroups.Pids(dir)
	if err != nil {
		return err
	}
	for _, p := range pids {
		_ = unix.Kill(p, unix.SIGKILL)
	}
	if err := fr.Thaw(); err != nil {
		return err
	}
	return cgroups.Kill(dir, 10*time.Second)
}

// containerIdentity picks the ID and name recorded in the archive: the
// runtime's ID when a runtime knows the container, else one derived from
// the host, the PID and its start time.
func containerIdentity(c *container, name, hostname string) (id, n string) {
	if c.runtime.ID != "" {
		id = c.runtime.ID
	}
	if len(id) != 64 {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d/%d", hostname, id, c.pid, processStart(c.pid).UnixNano())))
		id = hex.EncodeToString(sum[:])
	}
	switch {
	case name != "":
		n = name
	case c.runtime.ID != "":
		n = c.runtime.ID
	default:
		n = filepath.Base(c.cgroups[c.cgroupKey()])
	}
	return id, n
}

func (c *container) cgroupKey() string {
	if _, ok := c.cgroups["freezer"]; ok {
		return "freezer"
	}
	return cgroups.Unified
}

// processStart is when pid started (from /proc/PID/stat and the boot time).
func processStart(pid int) time.Time {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Now()
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return time.Now()
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return time.Now()
	}
	ticks, _ := strconv.ParseInt(f[19], 10, 64)
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return time.Now()
	}
	boot := time.Now().Add(-time.Duration(si.Uptime) * time.Second)
	return boot.Add(time.Duration(ticks) * time.Second / 100).Truncate(time.Second)
}

// hostCPU is this CPU as crtool.json records it: restore on another host
// compares it with its own, since the processes chose their code for it.
func hostCPU() *format.CPUFeatures {
	h := cpufeat.Host()
	return &h
}

// fdScope gathers what externalFiles needs besides the descriptors: the
// mounts of every mount namespace in the container and of the host, and the
// pipes that processes outside the container hold too.
func (d *dumper) fdScope(pids []int) (fdScope, error) {
	var s fdScope
	var err error
	if s.containerMounts, err = mountIDsOf(pids); err != nil {
		return s, err
	}
	for id := range d.mounts.ids {
		s.containerMounts[id] = true
	}
	if s.hostMounts, err = mountIDsOf([]int{os.Getpid()}); err != nil {
		return s, err
	}
	inside := map[int]bool{}
	for _, p := range pids {
		inside[p] = true
	}
	pipes := map[string]bool{}
	for _, f := range d.fds {
		if strings.HasPrefix(f.target, "pipe:[") {
			pipes[f.target] = true
		}
	}
	if s.pipesOutside, err = pipesHeldOutside(pipes, inside); err != nil {
		return s, err
	}
	return s, nil
}

// stdioOf is what descriptors 0, 1 and 2 of pid point to, as /proc shows it
// ("pipe:[123]", "/dev/null").
func stdioOf(pid int, fds []fdInfo) [3]string {
	var stdio [3]string
	for _, f := range fds {
		if f.pid == pid && f.fd >= 0 && f.fd < 3 {
			stdio[f.fd] = f.target
		}
	}
	return stdio
}

// writeDescriptors writes descriptors.json, which runc (and so Podman)
// reads on restore to reconnect the init's stdio.
func writeDescriptors(imgDir string, stdio [3]string) error {
	b, err := podman.Descriptors(stdio)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(imgDir, format.DescriptorsFile), b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", format.DescriptorsFile, err)
	}
	return nil
}
