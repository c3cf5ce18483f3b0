package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/network"
	"github.com/crtool/crtool/internal/podman"
	"github.com/crtool/crtool/internal/testutil"
	"github.com/crtool/crtool/internal/trust"
	"github.com/crtool/crtool/internal/undo"
	"github.com/crtool/crtool/internal/workdir"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "a.tar.gz")
	if err := os.WriteFile(archive, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full")
	if err := os.MkdirAll(filepath.Join(full, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		opts Options
		want string // "" for valid
	}{
		{"no input", Options{}, "-f/--import is required"},
		{"missing archive", Options{Input: filepath.Join(dir, "gone.tar")}, "does not exist"},
		{"directory", Options{Input: dir}, "is a directory"},
		{"stdin", Options{Input: "-"}, ""},
		{"file", Options{Input: archive}, ""},
		{"root not a directory", Options{Input: archive, Root: archive}, "--root"},
		{"root", Options{Input: archive, Root: dir}, ""},
		{"missing netns", Options{Input: archive, Netns: filepath.Join(dir, "ns")}, "--netns"},
		{"keep-images not empty", Options{Input: archive, KeepImages: full}, "--keep-images"},
		{"keep-images new", Options{Input: archive, KeepImages: filepath.Join(dir, "new")}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testutil.WantError(t, tt.opts.Validate(), tt.want)
		})
	}
	// Run refuses before it looks for CRIU.
	if _, err := Run(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "--import") {
		t.Fatalf("Run without an archive: %v", err)
	}
}

func TestDescribeRefuses(t *testing.T) {
	ctx := context.Background()
	tempStateDir(t)
	t.Run("tcp-established without the flag", func(t *testing.T) {
		r := &restorer{opts: Options{Input: referencePath(t, "nginx-tcp-established-gzip.tar.gz"), WorkDir: t.TempDir(), Root: t.TempDir()}}
		if err := r.unpack(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.describe(ctx); err == nil || !strings.Contains(err.Error(), "restore it with --tcp-established") {
			t.Fatalf("describe = %v", err)
		}
	})
	t.Run("foreign without --root or Podman", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		r := &restorer{opts: Options{Input: referencePath(t, "bb2-httpd-gzip.tar.gz"), WorkDir: t.TempDir()}}
		if err := r.unpack(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.describe(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.rootProblem(ctx); err == nil || !strings.Contains(err.Error(), "pass Root DIR") || !strings.Contains(err.Error(), "localhost/crtest-busybox") {
			t.Fatalf("rootProblem = %v", err)
		}
		r.abort()
	})
	t.Run("no inventory", func(t *testing.T) {
		in := crtoolArchive(t, &format.Metadata{Version: 1})
		stage := t.TempDir()
		if _, err := unpack(ctx, in, stage, nil); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(stage, format.CheckpointDir, format.InventoryImage)); err != nil {
			t.Fatal(err)
		}
		bad := packDir(t, stage)
		r := &restorer{opts: Options{Input: bad, WorkDir: t.TempDir()}}
		if err := r.unpack(ctx); !errors.Is(err, errdefs.ErrInvalidArchive) || !strings.Contains(err.Error(), "inventory.img is missing") {
			t.Fatalf("unpack = %v, want an invalid archive", err)
		}
		r.abort()
	})
	t.Run("newer crtool.json", func(t *testing.T) {
		r := &restorer{opts: Options{Input: crtoolArchive(t, &format.Metadata{Version: format.MetadataVersion + 1}), WorkDir: t.TempDir()}}
		if err := r.unpack(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.describe(ctx); !errors.Is(err, errdefs.ErrInvalidArchive) || !strings.Contains(err.Error(), "upgrade crtool") {
			t.Fatalf("describe = %v", err)
		}
		r.abort()
	})
	t.Run("not an archive", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "x.tar.gz")
		if err := os.WriteFile(p, []byte("not a tar at all, not even close to one, surely"), 0o600); err != nil {
			t.Fatal(err)
		}
		work := t.TempDir()
		r := &restorer{opts: Options{Input: p, WorkDir: work}}
		if err := r.unpack(ctx); err == nil || !strings.Contains(err.Error(), p) {
			t.Fatalf("unpack = %v", err)
		}
		r.abort()
		if entries, _ := os.ReadDir(work); len(entries) != 0 {
			t.Fatalf("work directory left behind: %v", entries)
		}
	})
}

func TestUnpackReportsProgress(t *testing.T) {
	in := referencePath(t, "bb2-httpd-gzip.tar.gz")
	st, err := os.Stat(in)
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	var last, total int64
	_, err = unpack(context.Background(), in, t.TempDir(), func(done, tot int64) {
		if done < last {
			t.Errorf("progress went back from %d to %d", last, done)
		}
		calls, last, total = calls+1, done, tot
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 || total != st.Size() || last != st.Size() {
		t.Fatalf("progress: %d calls, last %d of %d, want the whole %d bytes", calls, last, total, st.Size())
	}
	if _, err := unpack(context.Background(), filepath.Join(t.TempDir(), "gone"), t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "open archive") {
		t.Fatalf("unpack of a missing archive: %v", err)
	}
}

// TestForeignStateDirectory goes through what prepareRoot does for a
// Podman archive, except the overlay mount: the state directory, the
// archive's root filesystem changes on a copy of the root, Podman's
// per-container files, the mount points.
func TestForeignStateDirectory(t *testing.T) {
	ctx := context.Background()
	tempStateDir(t)
	root := t.TempDir()
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// deleted.files of bbloop names a file of the image.
	if err := os.WriteFile(filepath.Join(root, "bin", "ls"), []byte("ls"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := described(t, Options{Input: referencePath(t, "bbloop-portable-zstd.tar.zst"), Root: root})
	f := r.fg
	if err := f.dir.create(f.Metadata.Container.Name); err != nil {
		t.Fatal(err)
	}
	again := &foreign{Checkpoint: f.Checkpoint, dir: &containerDir{path: f.Dir}}
	if err := again.dir.create(f.Metadata.Container.Name); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "was restored here before") {
		t.Fatalf("second create = %v, want a conflict", err)
	}
	if err := again.dir.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Dir); err != nil {
		t.Fatalf("a restore removed a state directory it did not create: %v", err)
	}
	if err := f.makeDirs(); err != nil {
		t.Fatal(err)
	}
	if err := f.fill(ctx, r.wd.Path, root); err != nil {
		t.Fatal(err)
	}
	// rootfs-diff.tar: what the loop wrote; deleted.files: /bin/ls.
	if b, err := os.ReadFile(filepath.Join(root, "tmp", "counter")); err != nil || len(strings.TrimSpace(string(b))) == 0 {
		t.Fatalf("/tmp/counter from rootfs-diff.tar: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "bin", "ls")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("/bin/ls of deleted.files is still there: %v", err)
	}
	ud := filepath.Join(f.Dir, "userdata")
	// Podman named the host after the container's short ID.
	hostname := f.Spec.Hostname
	if len(hostname) != 12 {
		t.Fatalf("spec.dump's hostname %q", hostname)
	}
	hosts, err := os.ReadFile(filepath.Join(ud, "hosts"))
	if err != nil || !strings.Contains(string(hosts), "10.88.0.3\t"+hostname+"\n") || !strings.HasPrefix(string(hosts), "127.0.0.1\tlocalhost\n") {
		t.Fatalf("hosts = %q, %v, want localhost and the container's address", hosts, err)
	}
	if b, err := os.ReadFile(filepath.Join(ud, "hostname")); err != nil || string(b) != hostname+"\n" {
		t.Fatalf("hostname = %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(ud, "shm")); err != nil || st.Mode().Perm() != 0o777 || st.Mode()&os.ModeSticky == 0 {
		t.Fatalf("shm = %v, %v, want a sticky 1777 directory", st.Mode(), err)
	}
	// Mount points: directories for proc and sys, files for the bound files.
	for mp, source := range f.Targets {
		st, err := os.Lstat(filepath.Join(root, mp))
		if err != nil {
			t.Errorf("mount point %s: %v", mp, err)
			continue
		}
		if src, serr := os.Stat(source); serr == nil && !src.IsDir() && st.IsDir() {
			t.Errorf("mount point %s of file %s is a directory", mp, source)
		}
	}
	if st, err := os.Stat(filepath.Join(root, "proc")); err != nil || !st.IsDir() {
		t.Fatalf("/proc mount point: %v", err)
	}
	if st, err := os.Stat(filepath.Join(root, "etc", "hostname")); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("/etc/hostname mount point: %v", err)
	}
	// The bind mounts' sources now exist on this host.
	ext, err := mapMounts(r.md, r.policy())
	if err != nil {
		t.Fatalf("mapMounts after fill: %v", err)
	}
	if len(ext) != len(r.md.Mounts) {
		t.Fatalf("mapMounts = %d mounts, want %d", len(ext), len(r.md.Mounts))
	}
	if os.Geteuid() != 0 {
		t.Log("not root: remove, which unmounts the overlay, is not tried")
		return
	}
	if err := f.dir.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state directory left behind: %v", err)
	}
}

// A mount point must not be created through a symlink out of the root.
func TestMountTargetsStayInRoot(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "etc")); err != nil {
		t.Fatal(err)
	}
	f := &foreign{Checkpoint: &podman.Checkpoint{Targets: map[string]string{"/etc/app/conf.d": "", "/": ""}}}
	if err := f.mountTargets(root); err == nil {
		t.Fatal("mountTargets followed a symlink without an error")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("mountTargets created %v outside the root", entries)
	}
}

// crtoolMetadata is what a dump on this host records of a container that
// shared the host's network and had two descriptors leading outside.
func crtoolMetadata(t *testing.T, root string) *format.Metadata {
	t.Helper()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "app.log")
	if err := os.WriteFile(logFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	leaf := "/crtool-unit-" + strconv.Itoa(os.Getpid())
	paths := map[string]string{}
	for _, h := range []string{"freezer", "memory", cgroups.Unified} {
		if _, err := cgroups.MountPoint(h); err == nil {
			paths[h] = leaf
		}
	}
	return &format.Metadata{
		Version:    format.MetadataVersion,
		Container:  format.ContainerInfo{ID: strings.Repeat("ab", 32), Name: "web", Root: root},
		Cgroups:    format.CgroupInfo{Paths: paths},
		Namespaces: map[string]format.Namespace{"net": {Shared: true}, "mnt": {Inode: 4026532000}},
		Mounts:     []format.ExternalMount{{Key: "/proc/kcore", Kind: format.MountBind, Source: os.DevNull}, {Key: "/data", Kind: format.MountBind, Source: dir}},
		Files: []format.ExternalFile{
			{Key: "pipe:[77]", Kind: format.FilePipe, Flags: unix.O_WRONLY, Users: []format.FdRef{{PID: 1, Fd: 1}}},
			{Key: "file[2a:99]", Kind: format.FileReg, Path: logFile, Flags: unix.O_WRONLY, Users: []format.FdRef{{PID: 1, Fd: 2}}},
		},
		Options: format.DumpOptions{FileLocks: true},
	}
}

// TestPrepareCrtoolArchive runs the steps before CRIU on an archive crtool
// wrote, then finish: none of them changes the host for such an archive
// (its network is the host's, its cgroups do not exist yet).
func TestPrepareCrtoolArchive(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	md := crtoolMetadata(t, root)
	logPath := filepath.Join(t.TempDir(), "out.log")
	work, keep := t.TempDir(), filepath.Join(t.TempDir(), "images")
	r := &restorer{opts: Options{Input: crtoolArchive(t, md), WorkDir: work, Log: logPath, KeepImages: keep, AllowHostPath: []string{os.TempDir()}}}
	for _, step := range []func(context.Context) error{r.unpack, r.describe, r.prepareRoot, r.prepareCgroups, r.prepareNetwork, r.prepareFiles} {
		if err := step(ctx); err != nil {
			r.closeFiles()
			r.abort()
			t.Fatal(err)
		}
	}
	defer r.closeFiles()
	if r.fg != nil || r.name != "web" || r.root != root || r.net != nil {
		t.Fatalf("restorer: foreign %v, name %q, root %q, net %v", r.fg, r.name, r.root, r.net)
	}
	if len(r.extMnt) != 2 || r.extMnt[1].GetVal() != md.Mounts[1].Source {
		t.Fatalf("external mounts = %v", r.extMnt)
	}
	var keys []string
	for i, in := range r.inherit {
		keys = append(keys, in.GetKey())
		// CRIU sees them after its stdio and the RPC socket.
		if in.GetFd() != int32(4+i) {
			t.Errorf("inherited %s as fd %d, want %d", in.GetKey(), in.GetFd(), 4+i)
		}
	}
	if !slices.Equal(keys, []string{"pipe:[77]", "file[2a:99]"}) || len(r.files) != 2 {
		t.Fatalf("inherited %q with %d files", keys, len(r.files))
	}
	// The pipe's write end goes to --log.
	if r.files[0].Name() != logPath {
		t.Fatalf("the stdout pipe goes to %s, want %s", r.files[0].Name(), logPath)
	}
	o := criuRestoreOptions(9, r.root, r.md, r.opts, r.extMnt, r.inherit)
	if o.GetRoot() != root || len(o.GetInheritFd()) != 2 || len(o.GetExtMnt()) != 2 || o.GetTcpEstablished() {
		t.Fatalf("CRIU options: %v", o)
	}
	// A rollback now would remove cgroups the restore created: none exist.
	created, err := r.cg.Missing()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range created {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("preparing created cgroup %s", d)
		}
	}
	r.rollback.Release()
	res := r.finish(time.Now())
	if res.Name != "web" || res.Metadata != r.md || res.CRIU != nil {
		t.Fatalf("Result = %+v", res)
	}
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Fatalf("work directory left behind: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(keep, format.InventoryImage)); err != nil {
		t.Fatalf("--keep-images: %v", err)
	}
}

// TestRollbackReportsEveryFailure: when a step fails, every undo step runs
// although one of them fails, and its failure reaches Warnf.
func TestRollbackReportsEveryFailure(t *testing.T) {
	ctx := context.Background()
	md := crtoolMetadata(t, t.TempDir())
	md.Files[1].Path = filepath.Join(t.TempDir(), "gone.log")
	work := t.TempDir()
	var warnings []string
	r := &restorer{opts: Options{Input: crtoolArchive(t, md), WorkDir: work, AllowHostPath: []string{os.TempDir()}, Warnf: func(f string, a ...any) {
		warnings = append(warnings, fmt.Sprintf(f, a...))
	}}}
	var ranAfter bool
	steps := []func(context.Context) error{
		r.unpack,
		func(context.Context) error {
			r.rollback.Push("release the test's lock", func() error { return errors.New("lock is stuck") })
			return nil
		},
		r.describe, r.prepareRoot, r.prepareCgroups,
		func(context.Context) error {
			r.rollback.Push("remove the test's marker", func() error { ranAfter = true; return nil })
			return nil
		},
		r.prepareNetwork, r.prepareFiles,
	}
	var err error
	for _, step := range steps {
		if err = step(ctx); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "gone.log") || !strings.Contains(err.Error(), "create it") {
		t.Fatalf("prepareFiles = %v, want the missing file named", err)
	}
	r.closeFiles()
	r.abort()
	if !ranAfter {
		t.Fatal("an undo step after the failing one did not run")
	}
	if len(warnings) != 1 || warnings[0] != "undo release the test's lock: lock is stuck" {
		t.Fatalf("warnings = %q, want the stuck lock alone", warnings)
	}
	// The work directory went too, though it was the first step pushed.
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Fatalf("work directory left behind: %v", entries)
	}
	if r.rollback.Len() != 0 {
		t.Fatal("rollback kept its steps")
	}
}

func TestPrepareRootMissing(t *testing.T) {
	r := &restorer{md: &format.Metadata{Container: format.ContainerInfo{Root: filepath.Join(t.TempDir(), "gone")}}}
	r.wd = &workdir.Dir{Path: t.TempDir()}
	if err := r.rootProblem(context.Background()); err == nil || !strings.Contains(err.Error(), "pass Root DIR") {
		t.Fatalf("rootProblem = %v", err)
	}
	// Recorded as an image plus changes, it names the image.
	r.md.Container.RootFromImage, r.md.Container.Image = true, "localhost/crtest-absent:latest"
	t.Setenv("PATH", t.TempDir())
	if err := r.rootProblem(context.Background()); err == nil || !strings.Contains(err.Error(), "localhost/crtest-absent:latest") || !strings.Contains(err.Error(), "pass Root DIR") {
		t.Fatalf("rootProblem of an image's root = %v", err)
	}
}

func TestOpenExternalFile(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	reg := filepath.Join(dir, "data")
	if err := os.WriteFile(reg, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flagsOf := func(f *os.File) int {
		fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fl
	}
	for _, tt := range []struct {
		name     string
		ef       format.ExternalFile
		log      string
		path     string
		acc      int
		appended bool
	}{
		{"stdout pipe to the log", format.ExternalFile{Kind: format.FilePipe, Flags: unix.O_WRONLY}, logPath, logPath, unix.O_WRONLY, true},
		{"stdout pipe without a log", format.ExternalFile{Kind: format.FilePipe, Flags: unix.O_WRONLY}, "", os.DevNull, unix.O_RDWR, false},
		{"stdin pipe", format.ExternalFile{Kind: format.FilePipe, Flags: unix.O_RDONLY}, logPath, os.DevNull, unix.O_RDWR, false},
		{"file read", format.ExternalFile{Kind: format.FileReg, Path: reg, Flags: unix.O_RDONLY}, "", reg, unix.O_RDONLY, false},
		{"file written", format.ExternalFile{Kind: format.FileReg, Path: reg, Flags: unix.O_WRONLY | unix.O_TRUNC}, "", reg, unix.O_WRONLY, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := openExternalFile(0, tt.ef, tt.log, trust.Policy{HostPaths: []string{dir}})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Name() != tt.path {
				t.Fatalf("opened %s, want %s", f.Name(), tt.path)
			}
			fl := flagsOf(f)
			if fl&unix.O_ACCMODE != tt.acc || (fl&unix.O_APPEND != 0) != tt.appended {
				t.Fatalf("flags %#o, want access %#o, append %v", fl, tt.acc, tt.appended)
			}
		})
	}
	// Never truncated: what the file got meanwhile stays.
	if b, _ := os.ReadFile(reg); string(b) != "old\n" {
		t.Fatalf("file content now %q", b)
	}
	if _, err := openExternalFile(0, format.ExternalFile{Key: "file[1:2]", Kind: format.FileReg, Path: filepath.Join(dir, "gone")}, "", trust.Policy{HostPaths: []string{dir}}); err == nil || !strings.Contains(err.Error(), "file[1:2]") || !strings.Contains(err.Error(), "create it") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := openExternalFile(0, format.ExternalFile{Kind: format.FilePipe, Flags: unix.O_WRONLY}, filepath.Join(dir, "no", "log"), trust.Policy{}); err == nil || !strings.Contains(err.Error(), "--log") {
		t.Fatalf("unwritable log: %v", err)
	}
	if _, err := openExternalFile(0, format.ExternalFile{Kind: "socket"}, "", trust.Policy{}); !errors.Is(err, errdefs.ErrInvalidArchive) {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestCheckCgroupsFree(t *testing.T) {
	own, err := cgroups.ForPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The test's own cgroups hold the test.
	if err := checkCgroupsFree(own); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "stop the original container first") {
		t.Fatalf("checkCgroupsFree(own) = %v, want a conflict", err)
	}
	gone := cgroups.Set{}
	for k := range own {
		gone[k] = "/crtool-unit-" + strconv.Itoa(os.Getpid())
	}
	if err := checkCgroupsFree(gone); err != nil {
		t.Fatalf("cgroups that do not exist: %v", err)
	}
}

func TestWritePidFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pid")
	if err := writePidFile(p, 4242); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "4242" {
		t.Fatalf("pid file = %q, %v", b, err)
	}
	if _, err := os.Stat(p + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("temporary pid file left behind")
	}
	if err := writePidFile(filepath.Join(t.TempDir(), "no", "pid"), 1); err == nil || !strings.Contains(err.Error(), "write pid file") {
		t.Fatalf("pid file in a missing directory: %v", err)
	}
}

func TestNetnsName(t *testing.T) {
	md := &format.Metadata{Container: format.ContainerInfo{Name: "web"}, Namespaces: map[string]format.Namespace{"net": {}}}
	if got := netnsName(md, Options{}); got != "web" {
		t.Fatalf("netnsName = %q, want the container's name", got)
	}
	md.Namespaces["net"] = format.Namespace{Path: "/run/netns/web-net"}
	if got := netnsName(md, Options{}); got != "web-net" {
		t.Fatalf("netnsName = %q, want the recorded namespace's", got)
	}
	if got := netnsName(md, Options{Name: "web2"}); got != "web2" {
		t.Fatalf("netnsName = %q, want --name", got)
	}
}

func TestMissingAddresses(t *testing.T) {
	want := &format.Config{Addrs: []format.Addr{
		{Link: "eth0", CIDR: "192.0.2.5/24"},
		{Link: "eth0", CIDR: "fe80::1/64", Auto: true},
		{Link: "eth0", CIDR: "2001:db8::5/64"},
	}}
	if got := missingAddresses([]string{"127.0.0.1/8", "192.0.2.5/24", "2001:db8::5/64"}, want); len(got) != 0 {
		t.Fatalf("missing = %q, want none", got)
	}
	// The kernel's own address does not count.
	if got := missingAddresses([]string{"192.0.2.5/24"}, want); !slices.Equal(got, []string{"2001:db8::5/64"}) {
		t.Fatalf("missing = %q", got)
	}
}

// TestPlanNetwork decides where a restored container's network goes,
// reading (never changing) the test's own namespace.
func TestPlanNetwork(t *testing.T) {
	own := "/proc/self/ns/net"
	t.Run("join --netns", func(t *testing.T) {
		md := &format.Metadata{Namespaces: map[string]format.Namespace{"net": {Inode: 1}}}
		var rollback undo.Stack
		p, err := planNetwork(md, Options{Netns: own}, &rollback)
		if err != nil {
			t.Fatal(err)
		}
		defer p.close()
		if p.path != own || p.file == nil || p.created != "" || p.lock != nil {
			t.Fatalf("plan = %+v, want to join %s", p, own)
		}
		if err := p.afterRestore(); err != nil {
			t.Fatal(err)
		}
		// Joining creates nothing: nothing to undo.
		if rollback.Len() != 0 {
			t.Fatalf("joining a namespace pushed %d undo steps", rollback.Len())
		}
	})
	t.Run("recorded namespace with its addresses", func(t *testing.T) {
		// Reading a namespace's addresses joins it, even the own one.
		testutil.RequireRoot(t)
		md := &format.Metadata{
			Namespaces: map[string]format.Namespace{"net": {Path: own}},
			Network:    &format.Config{Addrs: []format.Addr{{Link: "lo", CIDR: "127.0.0.1/8"}}},
		}
		p, err := planNetwork(md, Options{}, &undo.Stack{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.close()
		if p.path != own || p.created != "" {
			t.Fatalf("plan = %+v, want the recorded namespace", p)
		}
	})
	t.Run("recorded namespace recreated empty", func(t *testing.T) {
		// Reading a namespace's addresses joins it, even the own one.
		testutil.RequireRoot(t)
		md := &format.Metadata{
			Namespaces: map[string]format.Namespace{"net": {Path: own}},
			Network:    &format.Config{Addrs: []format.Addr{{Link: "eth0", CIDR: "192.0.2.77/24"}}},
		}
		if _, err := planNetwork(md, Options{}, &undo.Stack{}); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "lacks the container's addresses (192.0.2.77/24)") {
			t.Fatalf("planNetwork = %v, want a conflict", err)
		}
	})
	t.Run("gone without a description", func(t *testing.T) {
		md := &format.Metadata{Namespaces: map[string]format.Namespace{"net": {Path: "/run/netns/crtool-unit-gone"}}}
		if _, err := planNetwork(md, Options{}, &undo.Stack{}); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "pass --netns PATH") {
			t.Fatalf("planNetwork = %v", err)
		}
	})
	t.Run("Podman archive without a bridge", func(t *testing.T) {
		tempStateDir(t)
		r := described(t, Options{Input: referencePath(t, "bb2-httpd-gzip.tar.gz"), Root: t.TempDir()})
		name := "crtool-unit-" + strconv.Itoa(os.Getpid())
		_, err := planNetwork(r.md, Options{Name: name}, &undo.Stack{})
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "pass --bridge NAME") || !strings.Contains(err.Error(), "eth0") {
			t.Fatalf("planNetwork = %v, want the bridge asked for", err)
		}
		// Refused before anything was created.
		if _, err := os.Stat(filepath.Join(network.NamedDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("network namespace %s created: %v", name, err)
		}
	})
	t.Run("nil plan", func(t *testing.T) {
		var p *netPlan
		if p.afterRestore() != nil {
			t.Fatal("a nil plan did something")
		}
		p.close()
	})
}
