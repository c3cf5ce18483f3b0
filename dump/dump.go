package dump

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/criu"
	"github.com/crtool/crtool/freezer"
	"github.com/crtool/crtool/images"
	"github.com/crtool/crtool/internal/undo"
	"github.com/crtool/crtool/internal/workdir"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Version is crtool's version, recorded in every archive.
var Version = "dev"

// Options configure a dump.
type Options struct {
	PID            int
	Output         string // archive path, or "-" for stdout
	Compression    images.Compression
	LeaveRunning   bool
	TCPEstablished bool
	KeepImages     string // copy CRIU's images here after a successful dump
	WorkDir        string // parent of the temporary image directory
	CRIUPath       string
	Name           string // container name recorded in the archive
	Image          string // image the root filesystem comes from
	ImageID        string
	RuntimeRoots   []string
	FreezeTimeout  time.Duration
	// Logf reports progress; nil discards it.
	Logf func(format string, args ...any)
}

// Result describes a finished dump.
type Result struct {
	Path     string
	Size     int64
	Metadata *images.Metadata
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
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
	if o.KeepImages != "" {
		if entries, err := os.ReadDir(o.KeepImages); err == nil && len(entries) > 0 {
			return fmt.Errorf("--keep-images %s is not empty: name a new or empty directory", o.KeepImages)
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

// Run dumps the container whose init is opts.PID into opts.Output. The
// container is frozen before CRIU runs and stays frozen until the archive is
// on disk; it is then killed, or thawed with LeaveRunning. If anything fails
// or ctx is cancelled, the container is thawed and keeps running and no file
// exists under opts.Output.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	start := time.Now()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	bin, err := criu.OpenAsRoot(ctx, opts.CRIUPath)
	if err != nil {
		return nil, err
	}
	c, err := inspectContainer(opts.PID, opts.RuntimeRoots)
	if err != nil {
		return nil, err
	}
	mt, err := readMounts(c.pid)
	if err != nil {
		return nil, err
	}
	if c.root, err = rootPath(mt); err != nil {
		return nil, err
	}
	extMounts, err := externalMounts(mt)
	if err != nil {
		return nil, err
	}
	spec, specJSON, err := specFor(c, mt, extMounts)
	if err != nil {
		return nil, err
	}

	var rollback undo.Stack
	defer func() {
		if err != nil {
			rollback.Run()
		}
	}()

	wd, err := workdir.New(opts.WorkDir, "crtool-dump-", images.CheckpointDir)
	if err != nil {
		return nil, err
	}
	stage, imgDir, logPath := wd.Path, wd.Images, wd.Log("dump.log")
	rollback.Push(func() { wd.KeepOnly(logPath) })
	if err := os.Mkdir(imgDir, 0o700); err != nil {
		return nil, fmt.Errorf("create image directory: %w", err)
	}

	fr, err := freezer.New(c.freezerDir)
	if err != nil {
		return nil, err
	}
	prev, err := fr.State()
	if err != nil {
		return nil, err
	}
	if prev != freezer.Thawed {
		return nil, fmt.Errorf("container cgroup %s is %s (paused): resume it before dumping", c.freezerDir, strings.ToLower(string(prev)))
	}
	opts.logf("freezing %s", c.freezerDir)
	freezeTook, err := fr.Freeze(ctx, opts.FreezeTimeout)
	if err != nil {
		return nil, err
	}
	frozenAt := time.Now()
	thawed := false
	thaw := func() {
		if thawed {
			return
		}
		if terr := fr.Thaw(); terr != nil {
			opts.logf("thaw %s: %v", c.freezerDir, terr)
		}
		thawed = true
	}
	rollback.Push(thaw)
	opts.logf("froze %s in %v", c.freezerDir, freezeTook)

	// With every task frozen the descriptor tables cannot change under us.
	pids, err := cgroups.Pids(c.freezerDir)
	if err != nil {
		return nil, err
	}
	extFiles, err := externalFiles(pids, mt.ids)
	if err != nil {
		return nil, err
	}

	imgFd, err := os.Open(imgDir)
	if err != nil {
		return nil, fmt.Errorf("open image directory: %w", err)
	}
	defer imgFd.Close()
	req := criu.Request{
		Type:    rpc.CriuReqType_DUMP,
		Opts:    criuDumpOptions(c, int32(imgFd.Fd()), extMounts, extFiles, opts),
		LogPath: logPath,
	}
	criuStart := time.Now()
	if _, err := bin.Run(ctx, req); err != nil {
		return nil, fmt.Errorf("dump pid %d: %w", c.pid, err)
	}
	criuTook := time.Since(criuStart)
	opts.logf("CRIU dumped pid %d in %v", c.pid, criuTook)
	var frozenFor time.Duration
	if opts.LeaveRunning {
		thaw()
		frozenFor = time.Since(frozenAt)
	}

	hostname, _ := os.Hostname()
	id, name := containerIdentity(c, opts.Name, hostname)
	created := processStart(c.pid)
	md := &images.Metadata{
		Version:     images.MetadataVersion,
		CreatedBy:   "crtool " + Version,
		Checkpoint:  time.Now().UTC(),
		Hostname:    hostname,
		Kernel:      kernelRelease(),
		CRIUVersion: bin.Version.String(),
		Container: images.ContainerInfo{
			ID: id, Name: name, Runtime: c.runtime.Name, Bundle: c.runtime.Bundle,
			Root: c.root, PID: c.pid, Image: opts.Image, ImageID: opts.ImageID,
		},
		Cgroups: images.CgroupInfo{
			Layout: string(cgroups.DetectLayout()), Paths: c.cgroups, Freezer: c.freezerDir,
		},
		Namespaces: c.namespaces,
		Mounts:     extMounts,
		Files:      extFiles,
		Options: images.DumpOptions{
			LeaveRunning: opts.LeaveRunning, TCPEstablished: opts.TCPEstablished, FileLocks: true,
		},
	}
	if spec.Process != nil {
		md.Container.Command = spec.Process.Args
	}
	cfgJSON, err := configDump(c, spec, id, name, opts.Image, opts.ImageID, created)
	if err != nil {
		return nil, err
	}
	if err := stageMetadata(stage, imgDir, specJSON, cfgJSON); err != nil {
		return nil, err
	}
	md.Stats = images.DumpStats{
		FreezingTime: freezeTook.Microseconds(),
		FrozenTime:   frozenFor.Microseconds(),
		CRIUTime:     criuTook.Microseconds(),
		TotalTime:    time.Since(start).Microseconds(),
	}
	if err := images.WriteMetadata(stage, md); err != nil {
		return nil, err
	}

	writeStart := time.Now()
	if _, err := images.WriteFile(ctx, opts.Output, stage, opts.Compression); err != nil {
		return nil, fmt.Errorf("write %s: %w", opts.Output, err)
	}
	if opts.Output != "-" {
		rollback.Push(func() { _ = os.Remove(opts.Output) })
	}
	writeTook := time.Since(writeStart)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dump interrupted: %w", err)
	}
	// The archive is safe on disk: from here on the dump commits.
	rollback.Release()
	defer wd.Remove()
	if opts.KeepImages != "" {
		if err := wd.MoveImages(opts.KeepImages); err != nil {
			opts.logf("%v", err)
		}
	}
	if !opts.LeaveRunning {
		killErr := stopContainer(fr, c.freezerDir)
		frozenFor = time.Since(frozenAt)
		if killErr != nil {
			return nil, fmt.Errorf("archive %s is complete, but stopping the container failed: %w", opts.Output, killErr)
		}
	}

	md.Stats.FrozenTime = frozenFor.Microseconds()
	md.Stats.WriteTime = writeTook.Microseconds()
	md.Stats.TotalTime = time.Since(start).Microseconds()
	res = &Result{Path: opts.Output, Metadata: md}
	if st, err := os.Stat(opts.Output); err == nil && opts.Output != "-" {
		res.Size = st.Size()
	}
	return res, nil
}

// criuDumpOptions builds CRIU's dump request.
func criuDumpOptions(c *container, imgFd int32, mounts []images.ExternalMount, files []images.ExternalFile, o Options) *rpc.CriuOpts {
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
		if f.Kind == images.FileReg {
			opts.External = append(opts.External, f.Key)
		}
	}
	return opts
}

// NetnsKey is the name under which the container's network namespace is
// external to CRIU; restore passes the namespace under the same key.
const NetnsKey = "extRootNetNS"

// stageMetadata writes the Podman-layout members next to the images.
func stageMetadata(stage, imgDir string, specJSON, cfgJSON []byte) error {
	if err := os.WriteFile(filepath.Join(stage, images.SpecDumpFile), specJSON, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", images.SpecDumpFile, err)
	}
	if err := os.WriteFile(filepath.Join(stage, images.ConfigDumpFile), cfgJSON, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", images.ConfigDumpFile, err)
	}
	if err := os.WriteFile(filepath.Join(stage, images.NetworkStatusFile), []byte("{}"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", images.NetworkStatusFile, err)
	}
	// CRIU writes its statistics into its work directory; Podman keeps
	// them at the top of the archive.
	stats := filepath.Join(imgDir, images.StatsDumpFile)
	if _, err := os.Stat(stats); err == nil {
		if err := os.Rename(stats, filepath.Join(stage, images.StatsDumpFile)); err != nil {
			return fmt.Errorf("move %s: %w", images.StatsDumpFile, err)
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

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
