package inspect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
)

// socketLine is a socket as tests name it: "pid/fd proto state local -> remote".
func socketLines(r *Report) []string {
	var out []string
	for _, p := range r.Processes {
		for _, s := range p.Sockets {
			line := fmt.Sprintf("%d/%d %s %s %s", p.PID, s.Fd, firstOf(s.Proto, s.Family), s.State, s.Local)
			if s.Remote != "" {
				line += " -> " + s.Remote
			}
			out = append(out, line)
		}
	}
	return out
}

func TestCollectPodmanArchives(t *testing.T) {
	tests := []struct {
		archive     string
		name        string
		compression string
		comms       map[uint32]string
		cmdline     string // of pid 1
		sockets     []string
		pagesSize   int64
		rootfsDiff  int64
		deleted     int
	}{
		{
			archive: "bb2-httpd-gzip.tar.gz", name: "bb2", compression: "gzip",
			comms:   map[uint32]string{1: "httpd"},
			cmdline: "/bin/httpd -f -p 8080 -h /www",
			sockets: []string{"1/3 tcp LISTEN [::]:8080"},
			deleted: 1,
		},
		{
			archive: "bbloop-criu411-gzip.tar.gz", name: "bbloop", compression: "gzip",
			comms:   map[uint32]string{1: "sh", 9: "sleep"},
			cmdline: "sh -c i=0; while true; do echo $i > /tmp/counter; i=$((i+1)); sleep 1; done",
			deleted: 1,
		},
		{
			archive: "nginx-gzip.tar.gz", name: "crtest-nginx", compression: "gzip",
			comms:   map[uint32]string{1: "nginx", 6: "nginx"},
			cmdline: "nginx: master process /usr/sbin/nginx",
			sockets: []string{"1/5 tcp LISTEN 0.0.0.0:80", "1/6 tcp LISTEN [::]:80", "6/5 tcp LISTEN 0.0.0.0:80"},
			deleted: 1,
		},
		{
			archive: "nginx-tcp-established-gzip.tar.gz", name: "crtest-nginx-r2", compression: "gzip",
			comms:   map[uint32]string{1: "nginx", 6: "nginx"},
			cmdline: "nginx: master process /usr/sbin/nginx",
			sockets: []string{
				"1/5 tcp LISTEN 0.0.0.0:80",
				"1/6 tcp LISTEN [::]:80",
				"6/7 tcp ESTABLISHED 10.88.0.17:80 -> 10.88.0.1:47572",
			},
			pagesSize: 4096 + 1024000 + 1355776, rootfsDiff: 5632, deleted: 1,
		},
		{
			archive: "nginx-zstd-default.tar.zst", name: "crtest-nginx-r1", compression: "zstd",
			comms:   map[uint32]string{1: "nginx", 6: "nginx"},
			cmdline: "nginx: master process /usr/sbin/nginx",
			deleted: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.archive, func(t *testing.T) {
			r, err := Collect(context.Background(), referencePath(t, tt.archive), All())
			if err != nil {
				t.Fatal(err)
			}
			if r.Container.Name != tt.name || r.Container.Engine != EnginePodman || r.Container.Runtime != "runc" {
				t.Errorf("container = %q %q %q, want %q Podman runc", r.Container.Name, r.Container.Engine, r.Container.Runtime, tt.name)
			}
			if r.Source.Compression != tt.compression || !r.Source.Complete || r.Source.Kind != SourceArchive {
				t.Errorf("source = %+v", r.Source)
			}
			if d := r.CRIU.DumpStats; d == nil || d.PagesWritten == 0 || d.FrozenTime == 0 {
				t.Errorf("CRIU dump statistics missing: %+v", d)
			}
			if r.CRIU.ImageVersion != 2 {
				t.Errorf("image version %d, want 2", r.CRIU.ImageVersion)
			}
			if !strings.HasPrefix(r.Container.IP, "10.88.0.") || r.Container.MAC == "" {
				t.Errorf("address %q %q, want one on the podman network", r.Container.IP, r.Container.MAC)
			}
			if r.Sizes.MemoryPages == nil || r.Sizes.Checkpoint == nil || *r.Sizes.MemoryPages <= 0 || *r.Sizes.Checkpoint <= *r.Sizes.MemoryPages {
				t.Fatalf("sizes = %+v", r.Sizes)
			}
			if tt.pagesSize != 0 && *r.Sizes.MemoryPages != tt.pagesSize {
				t.Errorf("memory pages %d, want %d", *r.Sizes.MemoryPages, tt.pagesSize)
			}
			// Every page CRIU wrote is in a pages image, and only those.
			if want := int64(r.CRIU.DumpStats.PagesWritten+r.CRIU.DumpStats.ShpagesWritten) * 4096; *r.Sizes.MemoryPages != want {
				t.Errorf("memory pages %d bytes, CRIU wrote %d", *r.Sizes.MemoryPages, want)
			}
			if tt.rootfsDiff != 0 && (r.Sizes.RootfsDiff == nil || *r.Sizes.RootfsDiff != tt.rootfsDiff) {
				t.Errorf("rootfs diff %v, want %d", r.Sizes.RootfsDiff, tt.rootfsDiff)
			}
			if r.Sizes.DeletedFiles != tt.deleted {
				t.Errorf("deleted files %d, want %d", r.Sizes.DeletedFiles, tt.deleted)
			}

			if len(r.Processes) != len(tt.comms) {
				t.Fatalf("processes %v, want %v", pids(r), tt.comms)
			}
			for pid, comm := range tt.comms {
				p := process(t, r, pid)
				if p.Comm != comm || p.State != StateAlive {
					t.Errorf("pid %d: %q %s, want %q alive", pid, p.Comm, p.State, comm)
				}
				if p.Memory == nil || len(p.Memory.Mappings) == 0 || p.Memory.Dumped == 0 {
					t.Fatalf("pid %d: memory %+v", pid, p.Memory)
				}
				// A process's pages image holds exactly what its pagemap
				// says was dumped.
				var sum uint64
				for _, m := range p.Memory.Mappings {
					sum += m.Dumped
				}
				if sum != p.Memory.Dumped {
					t.Errorf("pid %d: mappings hold %d dumped bytes, pagemap %d", pid, sum, p.Memory.Dumped)
				}
				if len(p.Env) == 0 && pid != 1 {
					t.Errorf("pid %d: no environment", pid)
				}
			}
			init := process(t, r, 1)
			if got := strings.Join(init.Cmdline, " "); got != tt.cmdline {
				t.Errorf("cmdline of pid 1 = %q, want %q", got, tt.cmdline)
			}
			var devNull, pipe bool
			for _, f := range init.Files {
				devNull = devNull || f.Fd == 0 && f.Type == "REG" && f.Path == "/dev/null"
				pipe = pipe || f.Type == "PIPE" && strings.HasPrefix(f.Path, "pipe:[") && f.External
			}
			if !devNull || !pipe {
				t.Errorf("files of pid 1 lack /dev/null on fd 0 or an external pipe: %+v", init.Files)
			}
			if init.Cwd == "" || init.Root != "/" {
				t.Errorf("cwd %q root %q", init.Cwd, init.Root)
			}
			got := socketLines(r)
			for _, want := range tt.sockets {
				if !slices.Contains(got, want) {
					t.Errorf("socket %q missing from %q", want, got)
				}
			}
			if r.Mounts == nil || len(r.Mounts.Spec) == 0 || len(r.Mounts.CRIU) == 0 {
				t.Errorf("mounts = %+v", r.Mounts)
			}
			if r.Network == nil || r.Network.Podman["podman"].Interfaces["eth0"].MAC != r.Container.MAC || r.Network.CRIUExternalKey == "" {
				t.Errorf("network = %+v", r.Network)
			}
		})
	}
}

// TestProcessMemoryMatchesPages checks the pagemap decoding against the
// pages images: CRIU 4 writes nr_pages in a field that go-criu v7 does not
// know, which a decoder reading only the old field takes for 0.
func TestProcessMemoryMatchesPages(t *testing.T) {
	for _, archive := range podmanArchives {
		t.Run(archive, func(t *testing.T) {
			path := referencePath(t, archive)
			sizes := map[string]int64{}
			for _, e := range readMembers(t, path) {
				sizes[e.name] = int64(len(e.data))
			}
			r, err := Collect(context.Background(), path, Options{Memory: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range r.Processes {
				if int64(p.Memory.Dumped) != sizes[p.Memory.PagesImage] {
					t.Errorf("pid %d: pagemap says %d bytes dumped, %s has %d", p.PID, p.Memory.Dumped, p.Memory.PagesImage, sizes[p.Memory.PagesImage])
				}
			}
		})
	}
}

func TestCollectOptions(t *testing.T) {
	path := referencePath(t, "nginx-tcp-established-gzip.tar.gz")
	tests := []struct {
		name  string
		opts  Options
		check func(t *testing.T, r *Report)
	}{
		{"summary only", Options{}, func(t *testing.T, r *Report) {
			if r.Processes != nil || r.Mounts != nil || r.Network != nil || r.Container.Annotations != nil {
				t.Errorf("sections not asked for: %+v", r)
			}
		}},
		{"ps-tree", Options{PsTree: true}, func(t *testing.T, r *Report) {
			if got := pids(r); !slices.Equal(got, []uint32{1, 6}) {
				t.Errorf("pids %v", got)
			}
			for _, p := range r.Processes {
				if p.Files != nil || p.Sockets != nil || p.Memory != nil || p.Cmdline != nil {
					t.Errorf("pid %d has sections not asked for", p.PID)
				}
			}
			if process(t, r, 6).PPID != 1 {
				t.Error("pid 6 is not a child of 1")
			}
		}},
		{"files imply ps-tree", Options{Files: true}, func(t *testing.T, r *Report) {
			if len(process(t, r, 6).Files) != 11 {
				t.Errorf("files of pid 6: %+v", process(t, r, 6).Files)
			}
		}},
		{"pid subtree", Options{PID: 6}, func(t *testing.T, r *Report) {
			if got := pids(r); !slices.Equal(got, []uint32{6}) {
				t.Errorf("pids %v", got)
			}
		}},
		{"metadata", Options{Metadata: true}, func(t *testing.T, r *Report) {
			if r.Container.Annotations["io.container.manager"] != "libpod" {
				t.Errorf("annotations %v", r.Container.Annotations)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Collect(context.Background(), path, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
	_, err := Collect(context.Background(), path, Options{PID: 42})
	if !errors.Is(err, ErrNoProcess) || !strings.Contains(err.Error(), "pids 1, 6") {
		t.Errorf("--pid 42: %v", err)
	}
}

// TestCollectForms inspects the same checkpoint as a plain tar with a CRI-O
// bind.mounts member, read from a reader, unpacked, and as a bare image
// directory.
func TestCollectForms(t *testing.T) {
	path := referencePath(t, "nginx-tcp-established-gzip.tar.gz")
	members := readMembers(t, path)
	bind := []byte(`[{"source":"/var/lib/kubelet/pods/x/volumes/data","destination":"/data","file_type":"directory","permissions":493}]`)
	// CRI-O's spec.dump says who made the container and which pod it is in.
	var crioMembers []tarEntry
	for _, e := range members {
		if e.name == format.SpecDumpFile {
			e.data = bytes.Replace(e.data, []byte(`"io.container.manager": "libpod"`),
				[]byte(`"io.container.manager": "cri-o", "io.kubernetes.cri-o.Metadata": "{\"name\":\"web\"}",`+
					` "io.kubernetes.pod.name": "web-7d9c4", "io.kubernetes.pod.namespace": "prod"`), 1)
		}
		crioMembers = append(crioMembers, e)
	}
	crio := makeTar(t, append([]tarEntry{{name: format.BindMountsFile, data: bind}}, crioMembers...))
	dir := unpack(t, path)

	tests := []struct {
		name    string
		collect func() (*Report, error)
		kind    string
		engine  string
		check   func(t *testing.T, r *Report)
	}{
		{"plain tar with bind.mounts", func() (*Report, error) {
			return Collect(context.Background(), writeFile(t, "crio.tar", crio), All())
		}, SourceArchive, EngineCRIO, func(t *testing.T, r *Report) {
			if r.Source.Compression != "none" {
				t.Errorf("compression %q", r.Source.Compression)
			}
			if ct := r.Container; ct.Name != "web" || ct.Pod != "web-7d9c4" || ct.Namespace != "prod" || ct.Manager != "cri-o" {
				t.Errorf("container %+v", ct)
			}
			want := []BindMount{{Source: "/var/lib/kubelet/pods/x/volumes/data", Destination: "/data", FileType: "directory", Permissions: 0o755}}
			if !slices.Equal(r.Mounts.BindMounts, want) {
				t.Errorf("bind mounts %+v", r.Mounts.BindMounts)
			}
			if r.Sizes.Archive == nil || *r.Sizes.Archive != int64(len(crio)) {
				t.Errorf("archive size %v, want %d", r.Sizes.Archive, len(crio))
			}
		}},
		{"reader", func() (*Report, error) {
			return CollectReader(context.Background(), bytes.NewReader(crio), "-", Options{Sockets: true})
		}, SourceArchive, EngineCRIO, func(t *testing.T, r *Report) {
			if r.Sizes.Archive == nil || *r.Sizes.Archive != int64(len(crio)) {
				t.Errorf("archive size %v, want %d", r.Sizes.Archive, len(crio))
			}
		}},
		{"unpacked", func() (*Report, error) {
			return Collect(context.Background(), dir, All())
		}, SourceDirectory, EnginePodman, func(t *testing.T, r *Report) {
			if r.Sizes.Archive != nil || r.Sizes.MemoryPages == nil || *r.Sizes.MemoryPages != 4096+1024000+1355776 {
				t.Errorf("sizes %+v", r.Sizes)
			}
		}},
		{"image directory", func() (*Report, error) {
			return Collect(context.Background(), filepath.Join(dir, format.CheckpointDir), All())
		}, SourceImages, EngineCRIU, func(t *testing.T, r *Report) {
			if r.CRIU.DumpStats != nil || r.Container.Name != "" {
				t.Errorf("a bare image directory has no metadata: %+v", r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.collect()
			if err != nil {
				t.Fatal(err)
			}
			if r.Source.Kind != tt.kind || r.Container.Engine != tt.engine {
				t.Errorf("kind %q engine %q, want %q %q", r.Source.Kind, r.Container.Engine, tt.kind, tt.engine)
			}
			if len(r.Processes) != 2 {
				t.Fatalf("processes %v", pids(r))
			}
			if !slices.Contains(socketLines(r), "6/7 tcp ESTABLISHED 10.88.0.17:80 -> 10.88.0.1:47572") {
				t.Errorf("sockets %q", socketLines(r))
			}
			tt.check(t, r)
		})
	}
}

func testMetadata() *format.Metadata {
	return &format.Metadata{
		Version:     format.MetadataVersion,
		CreatedBy:   "crtool test",
		Checkpoint:  time.Date(2026, 11, 28, 12, 30, 0, 0, time.UTC),
		Hostname:    "builder",
		Kernel:      "6.18.0-test",
		CRIUVersion: "4.2.1",
		CPU:         &format.CPUFeatures{Arch: "amd64", Model: "Test CPU", Flags: []string{"avx2", "avx512f"}, XCR0: 0x2e7},
		Container: format.ContainerInfo{ID: "abc123", Name: "web", Runtime: "runc", Root: "/var/lib/web/rootfs", PID: 4242,
			Command: []string{"/usr/sbin/nginx"}},
		Namespaces: map[string]format.Namespace{"net": {Inode: 4026532000, Path: "/run/netns/web"}},
		Mounts:     []format.ExternalMount{{Key: "/etc/hosts", Kind: format.MountBind, Source: "/srv/web/hosts"}},
		Files: []format.ExternalFile{{Key: "pipe:[449804]", Kind: format.FilePipe, Flags: 1,
			Users: []format.FdRef{{PID: 1, Fd: 1}, {PID: 6, Fd: 1}}}},
		Network: &format.Config{
			Links: []format.Link{{Name: "lo", Kind: format.KindLoopback, Flags: []string{"up", "loopback"}},
				{Name: "eth0", Kind: format.KindVeth, MAC: "02:00:00:00:00:02", MTU: 1500, Peer: &format.Peer{Name: "veth-web", Netns: format.HostNetns}}},
			Addrs: []format.Addr{{Link: "lo", CIDR: "127.0.0.1/8", Scope: "host", Auto: true},
				{Link: "eth0", CIDR: "10.201.0.2/24", Scope: "global"}},
			Routes:  []format.Route{{Family: "inet", Table: 254, Type: "unicast", Gateway: "10.201.0.1", Link: "eth0", Scope: "global", Protocol: "boot"}},
			Sockets: []format.Socket{{Proto: "tcp", Family: "inet", State: "LISTEN", Local: "0.0.0.0:80"}},
		},
		Options: format.DumpOptions{TCPEstablished: true},
		Stats:   format.DumpStats{FreezingTime: 1200, FrozenTime: 250000, CRIUTime: 240000, WriteTime: 9000, TotalTime: 260000},
	}
}

// TestCollectCrtoolArchive checks crtool.json handling and the early stop
// at the first pages image of archives crtool wrote.
func TestCollectCrtoolArchive(t *testing.T) {
	md := testMetadata()
	path := crtoolArchive(t, "nginx-tcp-established-gzip.tar.gz", md, archive.Zstd)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		opts     Options
		complete bool
	}{
		{"summary stops at the pages", Options{}, false},
		{"files and sockets stop at the pages", Options{Files: true, Sockets: true, Mounts: true, Network: true, Memory: true}, false},
		{"sizes read to the end", Options{Sizes: true}, true},
		{"cmdline reads the pages", Options{Cmdline: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Collect(context.Background(), path, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			ct := r.Container
			if ct.Engine != EngineCrtool || ct.Name != "web" || ct.ID != "abc123" || r.CRIU.Version != "4.2.1" {
				t.Errorf("container %+v criu %+v", ct, r.CRIU)
			}
			if ct.CheckpointedFrom != format.MetadataFile || !ct.Checkpointed.Equal(md.Checkpoint) {
				t.Errorf("checkpointed %v from %q", ct.Checkpointed, ct.CheckpointedFrom)
			}
			if ct.IP != "10.201.0.2/24" || ct.MAC != "02:00:00:00:00:02" {
				t.Errorf("address %q %q", ct.IP, ct.MAC)
			}
			c := r.Crtool
			if c == nil || c.Stats.FrozenTime != 250000 || c.Kernel != "6.18.0-test" || !c.TCPEstablished || c.Namespaces["net"] != "/run/netns/web" {
				t.Fatalf("crtool %+v", c)
			}
			if c.CPU == nil || c.CPU.Model != "Test CPU" || !slices.Equal(c.CPU.Flags, []string{"avx2", "avx512f"}) {
				t.Errorf("cpu %+v", c.CPU)
			}
			var tree strings.Builder
			if err := RenderTree(&tree, r, RenderOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"CPU:", "Test CPU, XCR0 0x2e7", "avx2 avx512f"} {
				if !strings.Contains(tree.String(), want) {
					t.Errorf("tree lacks %q:\n%s", want, tree.String())
				}
			}
			if r.Source.Complete != tt.complete {
				t.Fatalf("complete = %v, want %v (stopped at %q)", r.Source.Complete, tt.complete, r.Source.StoppedAt)
			}
			if r.CRIU.DumpStats == nil {
				t.Error("no CRIU statistics")
			}
			if tt.complete {
				if r.Sizes.MemoryPages == nil || *r.Sizes.MemoryPages != 4096+1024000+1355776 || *r.Sizes.Archive != fi.Size() {
					t.Errorf("sizes %+v", r.Sizes)
				}
			} else {
				if r.Source.StoppedAt != "checkpoint/pages-1.img" || r.Sizes.MemoryPages != nil || r.Sizes.MemoryPagesEstimate == nil || len(r.Notes) == 0 {
					t.Errorf("stopped at %q, sizes %+v, notes %q", r.Source.StoppedAt, r.Sizes, r.Notes)
				}
			}
			if tt.opts.Files {
				if !slices.Contains(socketLines(r), "6/7 tcp ESTABLISHED 10.88.0.17:80 -> 10.88.0.1:47572") {
					t.Errorf("sockets %q", socketLines(r))
				}
				if len(r.External) != 1 || r.External[0].Key != "pipe:[449804]" || !slices.Equal(r.External[0].Users, []string{"1/1", "6/1"}) {
					t.Errorf("external files %+v", r.External)
				}
				if r.Mounts.External[0].Source != "/srv/web/hosts" || r.Network.Captured == nil || len(r.Network.Captured.Routes) != 1 {
					t.Errorf("mounts %+v network %+v", r.Mounts, r.Network)
				}
				for _, p := range r.Processes {
					if p.Memory == nil || p.Memory.Dumped == 0 {
						t.Errorf("pid %d: memory %+v", p.PID, p.Memory)
					}
				}
			}
			if tt.opts.Cmdline && strings.Join(process(t, r, 6).Cmdline, " ") != "nginx: worker process" {
				t.Errorf("cmdline of pid 6: %q", process(t, r, 6).Cmdline)
			}
		})
	}
}

// TestCollectCorrupt checks that broken input gives an error that names
// the member and what is wrong.
func TestCollectCorrupt(t *testing.T) {
	path := referencePath(t, "nginx-tcp-established-gzip.tar.gz")
	members := readMembers(t, path)
	replace := func(name string, data []byte) []byte {
		var out []tarEntry
		for _, e := range members {
			if e.name == name {
				e.data = data
			}
			out = append(out, e)
		}
		return makeTar(t, out)
	}
	without := func(name string) []byte {
		var out []tarEntry
		for _, e := range members {
			if e.name != name {
				out = append(out, e)
			}
		}
		return makeTar(t, out)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	core := memberData(t, "nginx-tcp-established-gzip.tar.gz", "checkpoint/core-1.img")
	pstree := memberData(t, "nginx-tcp-established-gzip.tar.gz", "checkpoint/pstree.img")
	garbage := bytes.Repeat([]byte("garbage!"), 32)

	tests := []struct {
		name    string
		archive []byte
		opts    Options
		is      error
		want    []string // in the error
	}{
		{"truncated gzip", raw[:len(raw)/2], Options{}, archive.ErrCorrupt, []string{"truncated or corrupt"}},
		{"truncated tar", makeTar(t, members)[:300000], Options{}, archive.ErrCorrupt, []string{"checkpoint/pages-2.img"}},
		{"garbage core image", replace("checkpoint/core-1.img", garbage), Options{PsTree: true}, ErrCorruptImage,
			[]string{"checkpoint/core-1.img", "unknown magic"}},
		{"core image cut short", replace("checkpoint/core-1.img", core[:len(core)-7]), Options{PsTree: true}, ErrCorruptImage,
			[]string{"checkpoint/core-1.img", "runs past the end"}},
		{"core image of another kind", replace("checkpoint/core-1.img", pstree), Options{PsTree: true}, ErrCorruptImage,
			[]string{"checkpoint/core-1.img", "image of kind PSTREE, want CORE"}},
		{"pstree entry not a pstree entry", replace("checkpoint/pstree.img", append(pstree[:8:8], 3, 0, 0, 0, 0xff, 0xff, 0xff)), Options{PsTree: true}, ErrCorruptImage,
			[]string{"checkpoint/pstree.img"}},
		{"duplicate pid", replace("checkpoint/pstree.img", append(append([]byte(nil), pstree...), pstree[8:22]...)), Options{PsTree: true}, ErrCorruptImage,
			[]string{"checkpoint/pstree.img", "pid 1 appears twice"}},
		{"empty stats-dump", replace(format.StatsDumpFile, []byte{0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57}), Options{}, ErrCorruptImage,
			[]string{"stats-dump", "no entry"}},
		{"garbage config.dump", replace(format.ConfigDumpFile, []byte("{not json")), Options{}, ErrCorruptMetadata,
			[]string{"config.dump"}},
		{"no pstree", without("checkpoint/pstree.img"), Options{PsTree: true}, ErrMissing,
			[]string{"checkpoint/pstree.img: missing"}},
		{"no core", without("checkpoint/core-6.img"), Options{PsTree: true}, ErrMissing,
			[]string{"checkpoint/core-6.img"}},
		{"not a checkpoint", makeTar(t, []tarEntry{{name: "hello.txt", data: []byte("hi")}}), Options{}, ErrNotCheckpoint,
			[]string{"no crtool.json, config.dump"}},
		{"not an archive", garbage, Options{}, archive.ErrNotArchive, []string{"not a checkpoint archive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Collect(context.Background(), writeFile(t, "bad.tar", tt.archive), tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %q", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "inspect ") || !strings.Contains(err.Error(), "bad.tar") {
				t.Errorf("error %q does not name the archive", err)
			}
		})
	}
}

func TestCollectDirErrors(t *testing.T) {
	empty := t.TempDir()
	_, err := Collect(context.Background(), empty, Options{})
	if !errors.Is(err, ErrNotCheckpoint) || !strings.Contains(err.Error(), "no checkpoint/") {
		t.Errorf("empty directory: %v", err)
	}
	_, err = Collect(context.Background(), filepath.Join(empty, "missing"), Options{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing path: %v", err)
	}
	// A fifo in an image directory must not block inspect.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "inventory.img"), memberData(t, "bb2-httpd-gzip.tar.gz", "checkpoint/inventory.img"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := mkfifo(filepath.Join(dir, "pstree.img")); err != nil {
		t.Fatal(err)
	}
	r, err := Collect(context.Background(), dir, Options{})
	if err != nil || r.CRIU.ImageVersion != 2 {
		t.Fatalf("image directory with a fifo: %v", err)
	}
}
