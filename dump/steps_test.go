package dump

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/crtool/crtool/cgroups"
	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/freezer"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/testutil"
	"github.com/crtool/crtool/internal/workdir"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	if err := os.MkdirAll(filepath.Join(full, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "web.tar.gz")
	for _, tt := range []struct {
		name string
		opts Options
		want string // "" for valid
	}{
		{"no pid", Options{Output: out}, "--pid is required"},
		{"no output", Options{PID: 1}, "-f/--export is required"},
		{"output is a directory", Options{PID: 1, Output: dir}, "is a directory"},
		{"output directory missing", Options{PID: 1, Output: filepath.Join(dir, "no", "web.tar")}, "create it first"},
		{"keep-images not empty", Options{PID: 1, Output: out, KeepImages: full}, "--keep-images"},
		{"rootfs-base not a directory", Options{PID: 1, Output: out, RootfsBase: file}, "--rootfs-base"},
		{"stdout", Options{PID: 1, Output: "-"}, ""},
		{"file", Options{PID: 1, Output: out, KeepImages: filepath.Join(dir, "new"), RootfsBase: dir}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testutil.WantError(t, tt.opts.Validate(), tt.want)
		})
	}
	o := Options{PID: 1, Output: out}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	// PodmanNetwork stays empty: the container's own Podman network, once
	// known, is the default (fromPodman).
	if o.PodmanNetwork != "" || o.FreezeTimeout != 10*time.Second || !slices.Equal(o.RuntimeRoots, DefaultRuntimeRoots) {
		t.Fatalf("defaults not filled in: %+v", o)
	}
	// Run refuses before it looks for CRIU.
	if _, err := Run(context.Background(), Options{Output: out}); err == nil || !strings.Contains(err.Error(), "--pid") {
		t.Fatalf("Run without --pid: %v", err)
	}
}

func TestResolveImage(t *testing.T) {
	ctx := context.Background()
	id := strings.Repeat("ab", 32)
	if ref, err := resolveImage(ctx, "", ""); err != nil || ref != (imageRef{}) {
		t.Fatalf("no image: %+v, %v", ref, err)
	}
	if _, err := resolveImage(ctx, "", id); err == nil || !strings.Contains(err.Error(), "--image-id needs --image") {
		t.Fatalf("--image-id alone: %v", err)
	}
	for _, bad := range []string{"abc", strings.Repeat("AB", 32), strings.Repeat("g", 64)} {
		if _, err := resolveImage(ctx, "busybox", bad); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
			t.Fatalf("--image-id %s: %v", bad, err)
		}
	}
	if ref, err := resolveImage(ctx, "busybox", id); err != nil || ref != (imageRef{Name: "busybox", ID: id}) {
		t.Fatalf("--image with --image-id: %+v, %v", ref, err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := resolveImage(ctx, "busybox", ""); err == nil || !strings.Contains(err.Error(), "pass --image-id too") {
		t.Fatalf("--image without Podman: %v", err)
	}
}

func TestConnections(t *testing.T) {
	cfg := &format.Config{Sockets: []format.Socket{
		{Proto: "tcp", State: "ESTABLISHED", Inode: 100, Local: "192.0.2.1:80", Remote: "192.0.2.9:5000"},
		{Proto: "tcp", State: "LISTEN", Inode: 101},
		{Proto: "tcp", State: "CLOSE", Inode: 102},
		{Proto: "udp", State: "ESTABLISHED", Inode: 103},
		{Proto: "tcp", State: "ESTABLISHED", Inode: 104}, // another process's
		{Proto: "tcp", State: "CLOSE_WAIT", Inode: 105},
	}}
	fds := []fdInfo{
		{target: "socket:[100]"}, {target: "socket:[101]"}, {target: "socket:[102]"}, {target: "socket:[103]"},
		{target: "socket:[105]"}, {target: "pipe:[104]"}, {target: "socket:[x]"},
	}
	var got []uint32
	for _, s := range connections(cfg, fds) {
		got = append(got, s.Inode)
	}
	if !slices.Equal(got, []uint32{100, 105}) {
		t.Fatalf("connections = %v, want the container's connected TCP sockets 100 and 105", got)
	}
	if _, ok := socketInode("anon_inode:[eventfd]"); ok {
		t.Fatal("socketInode took a non-socket")
	}
}

// referenceMember reads one member of a reference archive.
func referenceMember(t *testing.T, name, member string) []byte {
	t.Helper()
	p := filepath.Join(testutil.RequireReference(t), "archives", name)
	f, err := os.Open(p)
	testutil.Require(t, err == nil, fmt.Sprintf("reference archive %s: %v", name, err))
	defer f.Close()
	var out []byte
	err = archive.Walk(context.Background(), f, func(hdr *tar.Header, body io.Reader) error {
		if hdr.Name != member {
			return nil
		}
		var err error
		out, err = io.ReadAll(body)
		if err != nil {
			return err
		}
		return archive.ErrStop
	})
	if err != nil || out == nil {
		t.Fatalf("%s in %s: %v", member, name, err)
	}
	return out
}

// members lists an archive's regular members with their content.
func members(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	err = archive.Walk(context.Background(), f, func(hdr *tar.Header, body io.Reader) error {
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(body)
			out[hdr.Name] = b
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// packedDumper is a dumper past CRIU: the images written (here CRIU's
// statistics of a reference dump and a stand-in inventory), for a process
// the test started, ready to pack.
func packedDumper(t *testing.T, opts Options) *dumper {
	t.Helper()
	pid := start(t, exec.Command("sleep", "60"))
	// Start returns after the fork, maybe before the exec.
	for deadline := time.Now().Add(5 * time.Second); commOf(pid) != "sleep"; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d is %q, not sleep", pid, commOf(pid))
		}
	}
	table, ext, nss := runcContainer(t, pid)
	c := &container{
		pid: pid, comm: "sleep", root: "/tmp/exp/bundle/rootfs", namespaces: nss,
		cgroups: cgroups.Set{"freezer": "/crtexp/c1"}, freezerDir: "/sys/fs/cgroup/freezer/crtexp/c1",
		runtime: runtimeState{Name: "runc", ID: "c1"},
	}
	spec, specJSON, err := specFor(c, table, ext)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Process.Args[0] != "sleep" {
		t.Fatalf("spec of %v", spec.Process.Args)
	}
	if opts.Output == "" {
		opts.Output = filepath.Join(t.TempDir(), "c1.tar.gz")
	}
	opts.PID = pid
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	wd, err := workdir.New(t.TempDir(), "crtool-dump-", format.CheckpointDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(wd.Images, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		format.StatsDumpFile:  referenceMember(t, "bb2-httpd-gzip.tar.gz", format.StatsDumpFile),
		format.InventoryImage: []byte("inventory"),
	} {
		if err := os.WriteFile(filepath.Join(wd.Images, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	return &dumper{
		opts: opts, bin: &criu.Binary{Version: criu.Version{Major: 4, Minor: 2, Sublevel: 1}},
		c: c, mounts: table, ext: ext, spec: specJSON, wd: wd, log: wd.Log("dump.log"),
		files: []format.ExternalFile{{Key: "pipe:[9]", Kind: format.FilePipe, Flags: 1, Users: []format.FdRef{{PID: pid, Fd: 1}}}},
		image: imageRef{Name: "localhost/crtest-busybox:latest", ID: strings.Repeat("cd", 32)},
		start: now.Add(-time.Second), frozenAt: now.Add(-500 * time.Millisecond), freezeTook: time.Millisecond,
	}
}

func TestPackAndFinish(t *testing.T) {
	keep := filepath.Join(t.TempDir(), "images")
	d := packedDumper(t, Options{Name: "web", LeaveRunning: true, KeepImages: keep, Compression: archive.Gzip, PodmanNetwork: "crtest"})
	d.network = &format.Config{
		Links: []format.Link{{Name: "lo", Kind: format.KindLoopback}, {Name: "eth0", Kind: format.KindVeth, MAC: "02:00:00:00:00:01"}},
		Addrs: []format.Addr{{Link: "eth0", CIDR: "192.0.2.10/24", Scope: "global"}},
	}
	if err := d.pack(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := members(t, d.opts.Output)
	for _, name := range []string{format.MetadataFile, format.SpecDumpFile, format.ConfigDumpFile, format.NetworkStatusFile, format.StatsDumpFile, format.CheckpointDir + "/" + format.InventoryImage} {
		if _, ok := got[name]; !ok {
			t.Errorf("archive lacks %s", name)
		}
	}
	if _, ok := got[format.CheckpointDir+"/"+format.StatsDumpFile]; ok {
		t.Error("stats-dump stayed among the images, where Podman does not look")
	}
	md, err := format.ParseMetadata(got[format.MetadataFile])
	if err != nil {
		t.Fatal(err)
	}
	if md.Container.Name != "web" || md.Container.Runtime != "runc" || md.Container.PID != d.c.pid || md.Container.Root != d.c.root ||
		md.CRIUVersion != "4.2.1" || md.Container.Image != d.image.Name || !slices.Equal(md.Container.Command, []string{"sleep", "60"}) {
		t.Fatalf("crtool.json container %+v, CRIU %s", md.Container, md.CRIUVersion)
	}
	if len(md.Mounts) != len(d.ext) || len(md.Files) != 1 || md.Network == nil || !md.Options.LeaveRunning || !md.Options.FileLocks {
		t.Fatalf("crtool.json mounts %v files %v network %v options %+v", md.Mounts, md.Files, md.Network, md.Options)
	}
	if md.Cgroups.Freezer != d.c.freezerDir || md.Cgroups.Paths["freezer"] != "/crtexp/c1" || md.Stats.FreezingTime != 1000 {
		t.Fatalf("crtool.json cgroups %+v stats %+v", md.Cgroups, md.Stats)
	}
	var cfg format.ContainerConfig
	if err := json.Unmarshal(got[format.ConfigDumpFile], &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.ID != md.Container.ID || cfg.Name != "web" || cfg.RootfsImageID != d.image.ID || cfg.CreateNetNS {
		t.Fatalf("config.dump %+v", cfg)
	}
	var status format.NetworkStatus
	if err := json.Unmarshal(got[format.NetworkStatusFile], &status); err != nil {
		t.Fatal(err)
	}
	if iface, ok := status["crtest"].Interfaces["eth0"]; !ok || iface.MacAddress != "02:00:00:00:00:01" {
		t.Fatalf("network.status %s", got[format.NetworkStatusFile])
	}

	res, err := d.finish()
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(d.opts.Output)
	if err != nil || res.Size != st.Size() || res.Path != d.opts.Output {
		t.Fatalf("Result %+v, archive %v", res, err)
	}
	// CRIU's own statistics, from the reference dump's stats-dump.
	if res.CRIU == nil || res.CRIU.GetPagesWritten() == 0 {
		t.Fatalf("Result CRIU statistics %v", res.CRIU)
	}
	if res.Metadata.Stats.TotalTime < time.Second.Microseconds() {
		t.Fatalf("total time %dµs, the dump began a second ago", res.Metadata.Stats.TotalTime)
	}
	if _, err := os.Stat(d.wd.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("work directory left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(keep, format.InventoryImage)); err != nil {
		t.Fatalf("--keep-images: %v", err)
	}
}

func TestPackHostNetwork(t *testing.T) {
	d := packedDumper(t, Options{})
	if err := d.pack(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := members(t, d.opts.Output)
	if string(got[format.NetworkStatusFile]) != "{}" {
		t.Fatalf("network.status of a container without a captured network: %s", got[format.NetworkStatusFile])
	}
	// Named after its runtime ID, without --name.
	if md, err := format.ParseMetadata(got[format.MetadataFile]); err != nil || md.Container.Name != "c1" {
		t.Fatalf("crtool.json: %v", err)
	}
	d.abort()
}

// fakeFreezer is a directory that reads as a v1 freezer cgroup.
func fakeFreezer(t *testing.T) (*freezer.Freezer, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fr, err := freezer.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fr, dir
}

func freezerState(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestRollbackThawsAndRemoves: a dump that fails after the archive was
// written thaws the container and removes the archive.
func TestRollbackThawsAndRemoves(t *testing.T) {
	d := packedDumper(t, Options{})
	var dir string
	d.fr, dir = fakeFreezer(t)
	d.c.freezerDir = dir
	var logs []string
	d.opts.Logf = func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	if err := d.freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	if st := freezerState(t, dir); st != "FROZEN" {
		t.Fatalf("freezer.state %s after freeze", st)
	}
	if len(logs) != 2 || !strings.HasPrefix(logs[1], "froze "+dir) {
		t.Fatalf("-v output %q", logs)
	}
	if err := d.pack(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Still frozen while the archive is written.
	if took := time.Since(frozen); d.frozenSoFar() < took {
		t.Fatalf("frozen for %v, frozen %v ago", d.frozenSoFar(), took)
	}
	var warnings []string
	d.opts.Warnf = func(f string, a ...any) { warnings = append(warnings, fmt.Sprintf(f, a...)) }
	d.abort()
	if st := freezerState(t, dir); st != "THAWED" {
		t.Fatalf("freezer.state %s after the rollback", st)
	}
	if _, err := os.Stat(d.opts.Output); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("archive left behind: %v", err)
	}
	if len(warnings) != 0 {
		t.Fatalf("warnings %q", warnings)
	}
}

// TestRollbackReportsFailedThaw: a thaw that fails is a warning, and the
// other steps still run.
func TestRollbackReportsFailedThaw(t *testing.T) {
	d := packedDumper(t, Options{})
	var dir string
	d.fr, dir = fakeFreezer(t)
	d.c.freezerDir = dir
	if err := d.freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.pack(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The freezer goes away under crtool's feet: freezer.state becomes a
	// directory, which cannot be written.
	state := filepath.Join(dir, "freezer.state")
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	d.opts.Warnf = func(f string, a ...any) { warnings = append(warnings, fmt.Sprintf(f, a...)) }
	d.abort()
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "undo thaw "+dir+": thaw "+dir+": ") {
		t.Fatalf("warnings %q, want the failed thaw", warnings)
	}
	if _, err := os.Stat(d.opts.Output); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("archive left behind after a failed thaw: %v", err)
	}
	// Thawing once is enough: a second try is a no-op.
	if err := d.thaw(); err != nil {
		t.Fatalf("second thaw: %v", err)
	}
	if err := d.unlock(); err != nil {
		t.Fatalf("unlock without a lock: %v", err)
	}
}

func TestStageMetadataFailures(t *testing.T) {
	if err := stageMetadata(filepath.Join(t.TempDir(), "gone"), t.TempDir(), []byte("{}"), []byte("{}"), nil, "podman"); err == nil || !strings.Contains(err.Error(), format.SpecDumpFile) {
		t.Fatalf("stageMetadata into a missing directory: %v", err)
	}
}

// overlayRoot is a mount table whose root is an overlay with the given
// directories.
func overlayRoot(t *testing.T, lower, upper, work string) *mountTable {
	t.Helper()
	line := fmt.Sprintf("68 44 0:50 / / rw,relatime - overlay overlay rw,lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	ms, err := mountinfo.GetMountsFromReader(strings.NewReader(line+"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	table, err := newMountTable(ms)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

func TestRootfsChanges(t *testing.T) {
	ctx := context.Background()
	mkfile := func(p, content string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	newDumper := func(root string, mounts *mountTable, opts Options) *dumper {
		stage := t.TempDir()
		return &dumper{opts: opts, c: &container{root: root}, mounts: mounts, wd: &workdir.Dir{Path: stage}}
	}
	t.Run("overlay", func(t *testing.T) {
		base := t.TempDir()
		lower, upper, work, merged := filepath.Join(base, "l"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
		mkfile(filepath.Join(lower, "www", "index.html"), "old")
		mkfile(filepath.Join(upper, "www", "new.html"), "new")
		mkfile(filepath.Join(merged, "www", "new.html"), "new")
		mkfile(filepath.Join(merged, "www", "index.html"), "old")
		d := newDumper(merged, overlayRoot(t, lower, upper, work), Options{})
		if err := d.rootfsChanges(ctx); err != nil {
			t.Fatal(err)
		}
		got := members(t, filepath.Join(d.wd.Path, format.RootfsDiffTar))
		if string(got["www/new.html"]) != "new" || got["www/index.html"] != nil {
			t.Fatalf("rootfs-diff.tar has %v", mapKeys(got))
		}
	})
	t.Run("against --rootfs-base", func(t *testing.T) {
		base, root := t.TempDir(), t.TempDir()
		mkfile(filepath.Join(base, "bin", "ls"), "ls")
		mkfile(filepath.Join(base, "etc", "motd"), "hi")
		mkfile(filepath.Join(root, "etc", "motd"), "hi")
		mkfile(filepath.Join(root, "tmp", "counter"), "7")
		// Unchanged: the same content and times as in the image.
		mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
		for _, d := range []string{base, root} {
			if err := os.Chtimes(filepath.Join(d, "etc", "motd"), mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		table, err := newMountTable(parseMounts(t, containerMounts))
		if err != nil {
			t.Fatal(err)
		}
		d := newDumper(root, table, Options{RootfsBase: base})
		if err := d.rootfsChanges(ctx); err != nil {
			t.Fatal(err)
		}
		got := members(t, filepath.Join(d.wd.Path, format.RootfsDiffTar))
		if string(got["tmp/counter"]) != "7" || got["etc/motd"] != nil {
			t.Fatalf("rootfs-diff.tar has %v", mapKeys(got))
		}
		deleted, err := os.ReadFile(filepath.Join(d.wd.Path, format.DeletedFilesFile))
		if err != nil {
			t.Fatal(err)
		}
		// The whole directory is gone, so it is listed alone.
		var paths []string
		if err := json.Unmarshal(deleted, &paths); err != nil || !slices.Equal(paths, []string{"/bin"}) {
			t.Fatalf("deleted.files = %s, %v", deleted, err)
		}
	})
	t.Run("nothing to compare", func(t *testing.T) {
		table, err := newMountTable(parseMounts(t, containerMounts))
		if err != nil {
			t.Fatal(err)
		}
		d := newDumper(t.TempDir(), table, Options{})
		if err := d.rootfsChanges(ctx); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(d.wd.Path); len(entries) != 0 {
			t.Fatalf("wrote %v without a base", entries)
		}
	})
}

func mapKeys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The test's own process is in the host's mount namespace: its root is the
// host's.
func TestReadMountsOfProcessOfTest(t *testing.T) {
	pid := start(t, exec.Command("sleep", "60"))
	table, err := readMounts(pid)
	if err != nil {
		t.Fatal(err)
	}
	if root, err := rootPath(table); err != nil || root != "/" {
		t.Fatalf("rootPath = %q, %v", root, err)
	}
	if _, err := externalMounts(table); err != nil {
		t.Fatalf("externalMounts: %v", err)
	}
	if _, err := readMounts(1<<22 + 12345); err == nil {
		t.Fatal("mounts of no process")
	}
}

func TestClassifyMountsRefusesInvisibleSource(t *testing.T) {
	table, err := newMountTable(parseMounts(t, containerMounts))
	if err != nil {
		t.Fatal(err)
	}
	_, err = classifyMounts(table, parseMounts(t, hostMounts), func(p string) bool { return p != "/srv/data" })
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "mount /data") || !strings.Contains(err.Error(), "not visible from the host") {
		t.Fatalf("classifyMounts = %v", err)
	}
}

func TestHierarchyOf(t *testing.T) {
	for opts, want := range map[string]string{
		"rw,cpu,cpuacct":                    "cpu,cpuacct",
		"rw,xattr,name=systemd":             "name=systemd",
		"ro,nosuid,memory":                  "memory",
		"rw,cpuset,clone_children,noprefix": "cpuset",
		"rw,release_agent=/x,freezer":       "freezer",
	} {
		m := &mountinfo.Info{FSType: "cgroup", VFSOptions: opts}
		if got := hierarchyOf(m); got != want {
			t.Errorf("hierarchyOf(%s) = %q, want %q", opts, got, want)
		}
	}
	if got := hierarchyOf(&mountinfo.Info{FSType: "cgroup2", VFSOptions: "rw"}); got != cgroups.Unified {
		t.Errorf("cgroup2 = %q", got)
	}
}
