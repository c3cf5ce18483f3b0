package cpufeat

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/criuimg"
	"github.com/crtool/crtool/internal/testutil"
)

// referenceImages extracts the process tree and core images of a reference
// archive into a new directory and returns their Set.
func referenceImages(t *testing.T, name string) *criuimg.Set {
	t.Helper()
	p := filepath.Join(testutil.RequireReference(t), "archives", name)
	_, err := os.Stat(p)
	testutil.Require(t, err == nil, fmt.Sprintf("reference archive %s: %v", name, err))
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	err = archive.Walk(context.Background(), f, func(hdr *tar.Header, body io.Reader) error {
		img, ok := strings.CutPrefix(hdr.Name, format.CheckpointDir+"/")
		if !ok || (img != "pstree.img" && !strings.HasPrefix(img, "core-")) {
			return nil
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path.Base(img)), b, 0o600)
	})
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return criuimg.New(criuimg.Dir(dir), format.CheckpointDir+"/")
}

// TestReferenceAVX512 reads a Podman archive made on a CPU with AVX-512
// (FORMAT.md, "CPU features travel with a checkpoint"): restored on an
// EPYC without it, its httpd died with SIGILL.
func TestReferenceAVX512(t *testing.T) {
	set := referenceImages(t, "bb2-httpd-gzip.tar.gz")
	states, err := Dumped(set)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || states[0].PID != 1 || states[0].XstateBV != 0x2a2 || states[0].PKRU != defaultPKRU {
		t.Fatalf("register state %+v, want process 1 with xstate_bv 0x2a2 and the kernel's PKRU", states)
	}
	const want = "checkpoint needs CPU features this host lacks: avx512f avx512vl avx512bw (process 1 used AVX-512 registers; code chosen for them would die with SIGILL): restore on a CPU that has them, or pass --skip-cpu-check"
	if got := render(Check(states, nil, epyc).Err()); got != want {
		t.Errorf("on an EPYC without AVX-512\n got %s\nwant %s", got, want)
	}
	if err := Check(states, nil, xeon).Err(); err != nil {
		t.Errorf("on a Xeon with AVX-512: %v", err)
	}
	// This host decides by what it has.
	r, err := CheckImages(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := Host()
	t.Logf("this host (%s, avx512f %v): %v", h.Model, Has(h, "avx512f"), r.Err())
	if avx512 := Has(h, "avx512f") && Has(h, "avx512vl") && Has(h, "avx512bw"); avx512 != (r.Err() == nil) {
		t.Errorf("host with AVX-512 %v, check says %v", avx512, r.Err())
	}
}

// TestReferencePortable reads archives made with glibc held to SSE2: they
// restore on any x86-64 CPU, so no x86-64 host may refuse them.
func TestReferencePortable(t *testing.T) {
	for _, name := range []string{"bb2-httpd-portable-gzip.tar.gz", "bbloop-portable-zstd.tar.zst"} {
		t.Run(name, func(t *testing.T) {
			set := referenceImages(t, name)
			states, err := Dumped(set)
			if err != nil {
				t.Fatal(err)
			}
			if len(states) == 0 {
				t.Fatal("no register state read")
			}
			for _, host := range []format.CPUFeatures{baseline, epyc, Host()} {
				if host.Arch != "amd64" {
					continue
				}
				r := Check(states, nil, host)
				if err := r.Err(); err != nil || len(r.Warnings) > 0 {
					t.Errorf("on %s: %v %v", host.Model, err, r.Warnings)
				}
			}
		})
	}
}

// TestDumpedSkipsZombies reads the process tree and core images of CRIU's
// zdtm test zombie00 (testdata/zombies): four zombies, whose tree entries
// carry thread IDs CRIU never filled in and no core images of their own.
func TestDumpedSkipsZombies(t *testing.T) {
	set := criuimg.New(criuimg.Dir("testdata/zombies"), format.CheckpointDir+"/")
	states, err := Dumped(set)
	if err != nil {
		t.Fatal(err)
	}
	var pids []uint32
	for _, s := range states {
		pids = append(pids, s.PID)
	}
	if len(pids) != 2 || pids[0] != 1 || pids[1] != 7 {
		t.Fatalf("register state of processes %v, want 1 and 7 (the live ones)", pids)
	}
}
