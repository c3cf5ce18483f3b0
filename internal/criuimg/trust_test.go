package criuimg

import (
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/cgroup"
	criu_core "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"google.golang.org/protobuf/proto"
)

func encode(t *testing.T, kind Kind, msgs ...proto.Message) []byte {
	t.Helper()
	b, err := Encode(kind, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type kobjIds criu_core.TaskKobjIdsEntry

// withTaskIds sets the ids that are not namespaces, which the format
// requires.
func (e *kobjIds) withTaskIds() *criu_core.TaskKobjIdsEntry {
	e.VmId, e.FilesId, e.FsId, e.SighandId = proto.Uint32(1), proto.Uint32(1), proto.Uint32(1), proto.Uint32(1)
	return (*criu_core.TaskKobjIdsEntry)(e)
}

func ids(pid, mnt, net, uts, ipc uint32) *criu_core.TaskKobjIdsEntry {
	return (&kobjIds{PidNsId: &pid, MntNsId: &mnt, NetNsId: &net, UtsNsId: &uts, IpcNsId: &ipc,
		UserNsId: proto.Uint32(7), CgroupNsId: proto.Uint32(8)}).withTaskIds()
}

// dumpOf is the images of a one-task tree whose root has the namespace
// ids task, dumped by a CRIU in the namespaces host; inCore puts the ids
// into the core image as CRIU 4 can, else into ids-1.img.
func dumpOf(t *testing.T, host, task *criu_core.TaskKobjIdsEntry, inCore bool) memSource {
	m := memSource{
		"inventory.img": encode(t, Inventory, &inventory.InventoryEntry{ImgVersion: proto.Uint32(2), RootIds: host}),
		"pstree.img":    encode(t, Pstree, &pstree.PstreeEntry{Pid: proto.Uint32(1), Ppid: proto.Uint32(0), Pgid: proto.Uint32(1), Sid: proto.Uint32(1)}),
	}
	c := &criu_core.CoreEntry{Mtype: criu_core.CoreEntry_X86_64.Enum()}
	if inCore {
		c.Ids = task
	} else {
		m[IdsName(1)] = encode(t, Ids, task)
	}
	m[CoreName(1)] = encode(t, Core, c)
	return m
}

func TestSharedNamespaces(t *testing.T) {
	host := ids(1, 6, 2, 4, 3)
	for _, tc := range []struct {
		name   string
		task   *criu_core.TaskKobjIdsEntry
		inCore bool
		want   []string
	}{
		{"container", ids(9, 13, 10, 12, 11), false, nil},
		{"container, ids in core", ids(9, 13, 10, 12, 11), true, nil},
		{"host network", ids(9, 13, 2, 12, 11), false, []string{"net"}},
		// A host process dumped with criu dump, crafted into an archive.
		{"host process", ids(1, 6, 2, 4, 3), true, []string{"pid", "mnt", "net", "uts", "ipc"}},
		{"ids missing", (&kobjIds{PidNsId: proto.Uint32(9)}).withTaskIds(), false, []string{"mnt", "net", "uts", "ipc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := New(dumpOf(t, host, tc.task, tc.inCore), "checkpoint/").SharedNamespaces()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("shared = %v, want %v", got, tc.want)
			}
		})
	}
	// Without root_ids nobody can tell: refused.
	m := dumpOf(t, host, ids(9, 13, 10, 12, 11), false)
	m["inventory.img"] = encode(t, Inventory, &inventory.InventoryEntry{ImgVersion: proto.Uint32(2)})
	if _, err := New(m, "checkpoint/").SharedNamespaces(); err == nil || !strings.Contains(err.Error(), "root_ids") {
		t.Errorf("no root_ids: err = %v", err)
	}
}

func TestCheckCgroups(t *testing.T) {
	entry := func(setPath, dir, prop string) *cgroup.CgroupEntry {
		return &cgroup.CgroupEntry{
			Sets: []*cgroup.CgSetEntry{{Id: proto.Uint32(1), Ctls: []*cgroup.CgMemberEntry{{Name: proto.String("memory"), Path: proto.String(setPath)}}}},
			Controllers: []*cgroup.CgControllerEntry{{Cnames: []string{"memory"}, Dirs: []*cgroup.CgroupDirEntry{{
				DirName:    proto.String(dir),
				Properties: []*cgroup.CgroupPropEntry{{Name: proto.String(prop), Value: proto.String("1")}},
			}}}},
		}
	}
	ok := entry("/crtool/c1", "crtool/c1", "memory.limit_in_bytes")
	if err := New(memSource{"cgroup.img": encode(t, Cgroup, ok)}, "checkpoint/").CheckCgroups(); err != nil {
		t.Fatal(err)
	}
	for name, e := range map[string]*cgroup.CgroupEntry{
		"set path":      entry("/../../../tmp", "crtool/c1", "memory.limit_in_bytes"),
		"dir name":      entry("/crtool/c1", "../../../../etc", "memory.limit_in_bytes"),
		"dir component": entry("/crtool/c1", "crtool/./../x", "memory.limit_in_bytes"),
		"property":      entry("/crtool/c1", "crtool/c1", "../../../etc/cron.d/x"),
	} {
		err := New(memSource{"cgroup.img": encode(t, Cgroup, e)}, "checkpoint/").CheckCgroups()
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "checkpoint/cgroup.img") {
			t.Errorf("%s: error %q does not name the image", name, err)
		}
	}
}

// TestSharedNamespacesReference: the images real CRIUs wrote for Podman's
// containers share no namespace with the host, and their cgroup.img
// passes.
func TestSharedNamespacesReference(t *testing.T) {
	for _, name := range []string{"bbloop-criu411-gzip.tar.gz", "nginx-gzip.tar.gz", "bb2-httpd-gzip.tar.gz"} {
		images, _ := loadArchive(t, name)
		s := New(images, "checkpoint/")
		shared, err := s.SharedNamespaces()
		if err != nil || len(shared) > 0 {
			t.Errorf("%s: shared %v, %v", name, shared, err)
		}
		if err := s.CheckCgroups(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
