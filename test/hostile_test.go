package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	criu_core "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/criuimg"
)

// The hostile-archive corpus: archives crafted the way an attacker would,
// each of which crtool restore must refuse with one line naming the field,
// before CRIU runs and before anything on the host changes.

// writeArchive packs members (name -> content) into a gzip'd tar.
func writeArchive(t *testing.T, members map[string][]byte) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	for name, data := range members {
		if d := filepath.Dir(name); d != "." && !dirs[d] {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(data)), ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "hostile.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func image(t *testing.T, kind criuimg.Kind, msgs ...proto.Message) []byte {
	t.Helper()
	b, err := criuimg.Encode(kind, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nsIds(pid, mnt, net, uts, ipc uint32) *criu_core.TaskKobjIdsEntry {
	one := proto.Uint32(1)
	return &criu_core.TaskKobjIdsEntry{VmId: one, FilesId: one, FsId: one, SighandId: one,
		PidNsId: &pid, MntNsId: &mnt, NetNsId: &net, UtsNsId: &uts, IpcNsId: &ipc, UserNsId: proto.Uint32(7)}
}

// hostileCase is a crafted archive: a sane crtool.json and process tree
// that change spoils.
type hostileCase struct {
	name   string
	change func(t *testing.T, md *format.Metadata, imgs map[string][]byte)
	field  string   // the error names it
	extra  []string // restore flags
	canary string   // a file that must keep its content, "" for none
}

// TestRestoreRefusesHostileArchives restores each crafted archive with the
// real binary and checks the refusal and that nothing was left or changed.
func TestRestoreRefusesHostileArchives(t *testing.T) {
	requireEnv(t)
	victimDir := t.TempDir()
	victim := filepath.Join(victimDir, "victim")
	fifo := filepath.Join(victimDir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The sysctl key that climbs from /proc/sys/net to victim.
	escape := []string{"net", "//", "//", "//"}
	for _, c := range strings.Split(strings.TrimPrefix(victim, "/"), "/") {
		escape = append(escape, strings.ReplaceAll(c, ".", "/"))
	}
	corePattern, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []hostileCase{
		{name: "sysctl key climbing out of /proc/sys", canary: victim, field: "network.sysctls",
			change: func(t *testing.T, md *format.Metadata, _ map[string][]byte) {
				md.Network.Sysctls = map[string]string{strings.Join(escape, "."): "owned"}
			}},
		{name: "kernel sysctl", field: "network.sysctls",
			// The current value: harmless should the check ever be missing.
			change: func(t *testing.T, md *format.Metadata, _ map[string][]byte) {
				md.Network.Sysctls = map[string]string{"kernel.core_pattern": strings.TrimSpace(string(corePattern))}
			}},
		{name: "host root", field: "container.root",
			change: func(t *testing.T, md *format.Metadata, _ map[string][]byte) { md.Container.Root = "/" }},
		{name: "process tree in the host's namespaces", field: "host's pid, mnt, net, uts, ipc namespace",
			change: func(t *testing.T, md *format.Metadata, imgs map[string][]byte) {
				imgs["checkpoint/core-1.img"] = image(t, criuimg.Core, &criu_core.CoreEntry{Mtype: criu_core.CoreEntry_X86_64.Enum(), Ids: nsIds(1, 6, 2, 4, 3)})
			}},
		{name: "host network namespace by path", field: "namespaces.net.path",
			change: func(t *testing.T, md *format.Metadata, _ map[string][]byte) {
				md.Namespaces["net"] = format.Namespace{Inode: 1, Path: "/proc/self/ns/net"}
			}},
		{name: "host network namespace shared", field: "namespaces.net.shared",
			change: func(t *testing.T, md *format.Metadata, _ map[string][]byte) {
				md.Namespaces["net"] = format.Namespace{Shared: true}
				md.Network = nil
			}},
		{name: "bind mount of /", field: "externalMounts[0].source",
			change: func(t *testing.T, md *format.Metadata, _ map[string][]byte) {
				md.Mounts = []format.ExternalMount{{Key: "/host", Kind: format.MountBind, Source: "/"}}
			}},
		{name: "external file /etc/shadow", field: "externalFiles[0].path",
			change: func(t *testing.T, md *format.Metadata, _ map[string][]byte) {
				md.Files = []format.ExternalFile{{Key: "file[1:2]", Kind: format.FileReg, Path: "/etc/shadow", Flags: unix.O_RDWR}}
			}},
		{name: "external file a FIFO", field: "externalFiles[0].path", extra: []string{"--allow-host-path", victimDir},
			change: func(t *testing.T, md *format.Metadata, _ map[string][]byte) {
				md.Files = []format.ExternalFile{{Key: "file[1:2]", Kind: format.FileReg, Path: fifo, Flags: unix.O_WRONLY}}
			}},
		{name: "cgroup path climbing out", field: "cgroups.paths",
			change: func(t *testing.T, md *format.Metadata, _ map[string][]byte) {
				md.Cgroups.Paths["freezer"] = "/../../../.." + victimDir
			}},
		{name: "container name with mount options", field: "container name",
			change: func(t *testing.T, md *format.Metadata, _ map[string][]byte) {
				md.Container.Name = ",upperdir=.,workdir=.."
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(victim, []byte("canary"), 0o600); err != nil {
				t.Fatal(err)
			}
			restoreHostile(t, tc)
			if b, _ := os.ReadFile(victim); string(b) != "canary" {
				t.Errorf("the victim file now holds %q", b)
			}
		})
	}
}

// restoreHostile builds tc's archive, restores it and checks the refusal.
func restoreHostile(t *testing.T, tc hostileCase) {
	t.Helper()
	id := uniqueID("crth-")
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	cg := "/crtool-test/" + id
	md := &format.Metadata{
		Version:   format.MetadataVersion,
		Container: format.ContainerInfo{ID: id, Name: id, Root: root},
		Cgroups:   format.CgroupInfo{Layout: "hybrid", Paths: map[string]string{"freezer": cg, "": cg}},
		Namespaces: map[string]format.Namespace{
			"net": {Inode: 1}, "pid": {Inode: 2}, "mnt": {Inode: 3}, "user": {Inode: 4, Shared: true},
		},
		Network: &format.Config{Links: []format.Link{{Name: "lo", Kind: format.KindLoopback, Flags: []string{"up", "loopback"}}}},
	}
	imgs := map[string][]byte{
		"checkpoint/inventory.img": image(t, criuimg.Inventory, &inventory.InventoryEntry{ImgVersion: proto.Uint32(2), RootIds: nsIds(1, 6, 2, 4, 3)}),
		"checkpoint/pstree.img":    image(t, criuimg.Pstree, &pstree.PstreeEntry{Pid: proto.Uint32(1), Ppid: proto.Uint32(0), Pgid: proto.Uint32(1), Sid: proto.Uint32(1)}),
		"checkpoint/core-1.img":    image(t, criuimg.Core, &criu_core.CoreEntry{Mtype: criu_core.CoreEntry_X86_64.Enum(), Ids: nsIds(9, 13, 10, 12, 11)}),
		// A log shipped in the archive must not be kept as CRIU's.
		"checkpoint/restore.log": []byte("Error (criu/cr-restore.c:1): shipped in the archive\n"),
	}
	tc.change(t, md, imgs)
	b, err := json.Marshal(md)
	if err != nil {
		t.Fatal(err)
	}
	imgs[format.MetadataFile] = b
	archive := writeArchive(t, imgs)

	work := t.TempDir()
	start := time.Now()
	r := crtool(t, append([]string{"restore", "-f", archive, "--work-dir", work}, tc.extra...)...)
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the refusal took %v", took)
	}
	if r.code == 0 {
		t.Fatalf("restore succeeded: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "crtool: error: ") || !strings.Contains(lines[0], tc.field) {
		t.Errorf("stderr %q: want one crtool: error line naming %s", r.stderr, tc.field)
	}
	// Refused before CRIU ran: not even its log is there.
	if entries, _ := os.ReadDir(work); len(entries) > 0 {
		var left []string
		_ = filepath.WalkDir(work, func(p string, _ os.DirEntry, _ error) error {
			left = append(left, p)
			return nil
		})
		t.Errorf("the refused restore left %v", left)
	}
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cg); len(dirs) > 0 {
		t.Errorf("the refused restore left cgroups %v", dirs)
	}
	for _, p := range []string{"/run/netns/" + id, "/var/lib/crtool/containers/" + id} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("the refused restore left %s", p)
		}
	}
}

// TestManifestRefusesFlippedByte dumps a real container into an
// uncompressed archive (so no stream checksum gets there first), flips a
// byte in a page image and in crtool.json, and checks that inspect
// --verify and restore refuse each copy naming the member, before CRIU
// runs; the intact archive then verifies and restores, and the counter
// goes on.
func TestManifestRefusesFlippedByte(t *testing.T) {
	c := startContainer(t, containerSpec{args: []string{"/bin/sh", "-c", counterScript}})
	before := c.waitCount(20)
	archive := c.dump("--compress", "none")
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	if r := crtool(t, "inspect", "--verify", archive); r.code != 0 || !strings.Contains(r.stdout, "all match the manifest") {
		t.Fatalf("inspect --verify of the intact archive: %s", r)
	}
	for _, member := range []string{"checkpoint/pages-1.img", format.MetadataFile} {
		off := memberOffset(t, data, member)
		bad := bytes.Clone(data)
		// Inside crtool.json a digit or letter of a value, not its syntax.
		bad[off+20] ^= 0x01
		p := filepath.Join(t.TempDir(), "flipped.tar")
		if err := os.WriteFile(p, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		want := `member "` + member + `" does not match its SHA-256`
		if r := crtool(t, "inspect", "--verify", p); r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("inspect --verify with %s flipped: %s", member, r)
		}
		work := t.TempDir()
		r := crtool(t, "restore", "-f", p, "--work-dir", work, "--allow-host-path", c.dir)
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("restore with %s flipped: %s", member, r)
		}
		if entries, _ := os.ReadDir(work); len(entries) > 0 {
			t.Errorf("the refused restore left %d entries in its work directory", len(entries))
		}
	}
	c.restore(archive)
	if after := c.ask(); after < before {
		t.Fatalf("counter after restore = %d, before dump = %d", after, before)
	}
}

// memberOffset is where member's content starts in the uncompressed tar b.
func memberOffset(t *testing.T, b []byte, member string) int {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("member %s not found: %v", member, err)
		}
		if hdr.Name == member {
			// archive/tar reads the header block(s) before returning; the
			// content starts at the next block boundary after the header
			// that named it.
			for off := 0; off+512 <= len(b); off += 512 {
				if string(bytes.TrimRight(b[off:off+100], "\x00")) == member {
					return off + 512
				}
			}
			t.Fatalf("header of %s not found", member)
		}
	}
}
