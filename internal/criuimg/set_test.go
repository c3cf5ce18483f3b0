package criuimg

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/testutil"
)

// memSource is a Source held in memory, as an archive's members are.
type memSource map[string][]byte

func (m memSource) ReadImage(name string) ([]byte, error) {
	if b, ok := m[name]; ok {
		return b, nil
	}
	return nil, fs.ErrNotExist
}

// loadArchive reads a reference archive's CRIU images (checkpoint/*) and its
// top-level members without extracting anything.
func loadArchive(t *testing.T, name string) (images, top memSource) {
	t.Helper()
	p := filepath.Join(testutil.RequireReference(t), "archives", name)
	f, err := os.Open(p)
	testutil.Require(t, err == nil, fmt.Sprintf("reference archive %s: %v", name, err))
	defer f.Close()
	images, top = memSource{}, memSource{}
	err = archive.Walk(context.Background(), f, func(hdr *tar.Header, body io.Reader) error {
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if rest, ok := strings.CutPrefix(hdr.Name, format.CheckpointDir+"/"); ok {
			images[rest] = b
		} else {
			top[hdr.Name] = b
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return images, top
}

// critJSON reads what pycriu's crit show printed for an image of a
// reference archive: an independent decoder to check crtool's against.
func critJSON(t *testing.T, archiveName, image string, v any) {
	t.Helper()
	p := filepath.Join(testutil.RequireReference(t), "decoded", archiveName, image)
	b, err := os.ReadFile(p)
	testutil.Require(t, err == nil, fmt.Sprintf("decoded reference image %s: %v", p, err))
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

// TestQueriesMatchCrit checks every query against crit's decoding of the
// two archives the reference decodes.
func TestQueriesMatchCrit(t *testing.T) {
	for _, name := range []string{"bbloop-criu411-gzip", "nginx-tcp-established-gzip"} {
		t.Run(name, func(t *testing.T) {
			file := name + ".tar.gz"
			images, top := loadArchive(t, file)
			s := New(images, "checkpoint/")

			var pstree struct {
				Entries []struct {
					Pid, Ppid uint32
				}
			}
			critJSON(t, name, "pstree.img.json", &pstree)
			tree, err := s.Tree()
			if err != nil {
				t.Fatal(err)
			}
			if len(tree) != len(pstree.Entries) {
				t.Fatalf("Tree has %d tasks, crit %d", len(tree), len(pstree.Entries))
			}
			for i, e := range tree {
				if e.GetPid() != pstree.Entries[i].Pid || e.GetPpid() != pstree.Entries[i].Ppid {
					t.Errorf("task %d = pid %d ppid %d, crit %+v", i, e.GetPid(), e.GetPpid(), pstree.Entries[i])
				}
			}
			root, err := s.RootPID()
			if err != nil || root != pstree.Entries[0].Pid {
				t.Fatalf("RootPID = %d, %v", root, err)
			}

			var core struct {
				Entries []struct {
					ThreadCore struct {
						CgSet uint32 `json:"cg_set"`
					} `json:"thread_core"`
					Tc struct {
						Comm string
					}
					ThreadInfo struct {
						Fpregs struct {
							Xsave struct {
								XstateBv uint64 `json:"xstate_bv"`
							}
						}
					} `json:"thread_info"`
				}
			}
			critJSON(t, name, fmt.Sprintf("core-%d.img.json", root), &core)
			var cg struct {
				Entries []struct {
					Sets []struct {
						ID   uint32
						Ctls []struct{ Name, Path string }
					}
				}
			}
			critJSON(t, name, "cgroup.img.json", &cg)
			want := map[string]string{}
			for _, set := range cg.Entries[0].Sets {
				if set.ID == core.Entries[0].ThreadCore.CgSet {
					for _, c := range set.Ctls {
						want[c.Name] = c.Path
					}
				}
			}
			got, err := s.Cgroups()
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("Cgroups = %v, crit's set %d is %v", got, core.Entries[0].ThreadCore.CgSet, want)
			}

			var fsImg struct {
				Entries []struct {
					RootID uint32 `json:"root_id"`
				}
			}
			critJSON(t, name, fmt.Sprintf("fs-%d.img.json", root), &fsImg)
			var files struct {
				Entries []struct {
					ID  uint32
					Reg struct{ Mode uint32 }
				}
			}
			critJSON(t, name, "files.img.json", &files)
			var wantMode uint32
			for _, f := range files.Entries {
				if f.ID == fsImg.Entries[0].RootID {
					wantMode = f.Reg.Mode
				}
			}
			mode, err := s.RootMode()
			if err != nil || mode != wantMode || mode&unix.S_IFMT != unix.S_IFDIR {
				t.Fatalf("RootMode = %#o, %v, crit %#o", mode, err, wantMode)
			}

			procs, err := s.Processes()
			if err != nil {
				t.Fatal(err)
			}
			if len(procs) != len(tree) || procs[0].Comm != core.Entries[0].Tc.Comm || procs[0].State != 1 {
				t.Fatalf("Processes = %+v, crit comm %q", procs, core.Entries[0].Tc.Comm)
			}
			// Made on a CPU with AVX-512 (FORMAT.md): opmask and Hi16_ZMM.
			bv, ok, err := s.FPU(root)
			if err != nil || !ok || bv != core.Entries[0].ThreadInfo.Fpregs.Xsave.XstateBv || bv != 0x2a3 {
				t.Fatalf("FPU = %#x, %v, %v, crit %#x", bv, ok, err, core.Entries[0].ThreadInfo.Fpregs.Xsave.XstateBv)
			}

			var mounts []string
			for n := range images {
				if strings.HasPrefix(n, "mountpoints-") {
					mounts = append(mounts, n)
				}
			}
			if len(mounts) != 1 {
				t.Fatalf("mount images %v, want one", mounts)
			}
			var mnts struct {
				Entries []struct {
					Mountpoint string
					ExtKey     string `json:"ext_key"`
				}
			}
			critJSON(t, name, mounts[0]+".json", &mnts)
			nss, err := s.MountNamespaces(mounts)
			if err != nil {
				t.Fatal(err)
			}
			if len(nss) != 1 || len(nss[0].Mounts) != len(mnts.Entries) || nss[0].Root == nil || nss[0].Root.GetMountpoint() != "/" {
				t.Fatalf("MountNamespaces = %d namespaces, want 1 with %d mounts and a root", len(nss), len(mnts.Entries))
			}
			var wantExt []string
			for _, m := range mnts.Entries {
				if m.ExtKey != "" && !slices.Contains(wantExt, m.ExtKey) {
					wantExt = append(wantExt, m.ExtKey)
				}
			}
			var gotExt []string
			for _, me := range External(nss) {
				gotExt = append(gotExt, me.GetExtKey())
			}
			if !slices.Equal(gotExt, wantExt) {
				t.Fatalf("External = %q, crit %q", gotExt, wantExt)
			}

			var st struct {
				Entries []struct {
					Dump struct {
						FreezingTime uint32 `json:"freezing_time"`
						FrozenTime   uint32 `json:"frozen_time"`
						PagesWritten uint64 `json:"pages_written"`
					}
				}
			}
			critJSON(t, name, "stats-dump.json", &st)
			ds, err := New(top, "").DumpStats(format.StatsDumpFile)
			if err != nil {
				t.Fatal(err)
			}
			w := st.Entries[0].Dump
			if ds.GetFreezingTime() != w.FreezingTime || ds.GetFrozenTime() != w.FrozenTime || ds.GetPagesWritten() != w.PagesWritten {
				t.Fatalf("DumpStats = %v, crit %+v", ds, w)
			}
			// A dump's statistics have no restore part.
			if rs, err := New(top, "").RestoreStats(format.StatsDumpFile); err != nil || rs != nil {
				t.Fatalf("RestoreStats of a dump = %v, %v", rs, err)
			}
		})
	}
}

// TestReferenceArchives asks each reference archive what FORMAT.md says of
// it.
func TestReferenceArchives(t *testing.T) {
	for _, tt := range []struct {
		archive string
		comms   []string
		avx512  bool
	}{
		{"bb2-httpd-gzip.tar.gz", []string{"httpd"}, true},
		{"bb2-httpd-portable-gzip.tar.gz", []string{"httpd"}, false},
		{"bbloop-criu411-gzip.tar.gz", []string{"sh", "sleep"}, true},
		{"bbloop-portable-zstd.tar.zst", []string{"sh", "sleep"}, false},
		{"nginx-gzip.tar.gz", []string{"nginx", "nginx"}, true},
		{"nginx-tcp-established-gzip.tar.gz", []string{"nginx", "nginx"}, true},
		{"nginx-zstd-default.tar.zst", []string{"nginx", "nginx"}, true},
	} {
		t.Run(tt.archive, func(t *testing.T) {
			images, top := loadArchive(t, tt.archive)
			s := New(images, "checkpoint/")
			procs, err := s.Processes()
			if err != nil {
				t.Fatal(err)
			}
			var comms []string
			for _, p := range procs {
				comms = append(comms, p.Comm)
				if p.UID == nil || *p.UID != 0 {
					t.Errorf("pid %d runs as uid %v, want 0", p.PID, p.UID)
				}
			}
			if !slices.Equal(comms, tt.comms) || procs[0].PID != 1 {
				t.Fatalf("processes %q (root pid %d), want %q from pid 1", comms, procs[0].PID, tt.comms)
			}
			cg, err := s.Cgroups()
			if err != nil {
				t.Fatal(err)
			}
			// Podman here: cgroupfs manager, cgroup parent /libpod_parent.
			if !strings.HasPrefix(cg["freezer"], "/libpod_parent/libpod-") || cg["freezer"] != cg["memory"] {
				t.Fatalf("Cgroups = %v", cg)
			}
			if mode, err := s.RootMode(); err != nil || mode&unix.S_IFMT != unix.S_IFDIR {
				t.Fatalf("RootMode = %#o, %v", mode, err)
			}
			bv, ok, err := s.FPU(1)
			if err != nil || !ok {
				t.Fatalf("FPU = %v, %v", ok, err)
			}
			// Opmask, ZMM_Hi256 and Hi16_ZMM: components only AVX-512 uses.
			if got := bv&0xe0 != 0; got != tt.avx512 {
				t.Fatalf("xstate_bv %#x: AVX-512 state %v, want %v", bv, got, tt.avx512)
			}
			ds, err := New(top, "").DumpStats(format.StatsDumpFile)
			if err != nil || ds == nil || ds.GetPagesWritten() == 0 {
				t.Fatalf("DumpStats = %v, %v", ds, err)
			}
			if !s.Has("inventory.img") || s.Has("no-such.img") {
				t.Fatal("Has is wrong")
			}
		})
	}
}

func TestSetErrors(t *testing.T) {
	images, _ := loadArchive(t, "bbloop-criu411-gzip.tar.gz")
	pstree := images["pstree.img"]
	// An image is its magic words, then entries of a 32-bit size and that
	// many bytes.
	head, body := pstree[:8], pstree[8:]
	first := body[:4+binary.LittleEndian.Uint32(body)]

	for _, tt := range []struct {
		name    string
		src     memSource
		want    error
		message string
	}{
		{"missing", memSource{}, ErrMissing, "checkpoint/pstree.img: missing from the checkpoint"},
		{"truncated", memSource{"pstree.img": pstree[:len(pstree)-3]}, ErrCorrupt, "runs past the end"},
		{"other kind", memSource{"pstree.img": images["inventory.img"]}, ErrCorrupt, "image of kind INVENTORY, want PSTREE"},
		{"empty", memSource{"pstree.img": head}, ErrCorrupt, "no entry"},
		{"pid twice", memSource{"pstree.img": append(slices.Clone(pstree), first...)}, ErrCorrupt, "pid 1 appears twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.src, "checkpoint/").Tree()
			var ie *Error
			if !errors.Is(err, tt.want) || !errors.As(err, &ie) || ie.Image != "checkpoint/pstree.img" || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("Tree = %v, want %v naming checkpoint/pstree.img and saying %q", err, tt.want, tt.message)
			}
		})
	}
	// A tree whose root has no core image.
	s := New(memSource{"pstree.img": pstree}, "")
	if _, err := s.Cgroups(); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "core-1.img") {
		t.Fatalf("Cgroups without core-1.img: %v", err)
	}
	// A root directory files.img does not describe.
	noRoot := memSource{}
	for k, v := range images {
		noRoot[k] = v
	}
	noRoot["files.img"] = images["files.img"][:8]
	if _, err := New(noRoot, "").RootMode(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "does not describe the root directory") {
		t.Fatalf("RootMode without the root's file entry: %v", err)
	}
}

func TestDirReadImage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.img"), []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := Dir(dir).ReadImage("a.img"); err != nil || string(b) != "abc" {
		t.Fatalf("ReadImage = %q, %v", b, err)
	}
	if _, err := Dir(dir).ReadImage("gone.img"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadImage of a missing image: %v", err)
	}
	// A sparse file one byte over the limit costs no disk.
	big, err := os.Create(filepath.Join(dir, "big.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(MaxSize + 1); err != nil {
		t.Fatal(err)
	}
	big.Close()
	if _, err := Dir(dir).ReadImage("big.img"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadImage of an image over MaxSize: %v", err)
	}
}

func TestPIDList(t *testing.T) {
	images, _ := loadArchive(t, "nginx-gzip.tar.gz")
	tree, err := New(images, "").Tree()
	if err != nil {
		t.Fatal(err)
	}
	if got := PIDList(tree); !strings.HasPrefix(got, "pids 1, ") || strings.Count(got, ",") != len(tree)-1 {
		t.Fatalf("PIDList = %q", got)
	}
	if got := PIDList(slices.Repeat(tree[:1], 30)); !strings.HasSuffix(got, ", ...") || strings.Count(got, "1") != 20 {
		t.Fatalf("PIDList of 30 = %q", got)
	}
}
