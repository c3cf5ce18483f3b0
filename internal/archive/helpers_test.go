package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crtool/crtool/internal/testutil"
)

// referenceDir holds the real Podman archives the tests read.
var referenceDir = testutil.ReferenceDir()

// podmanArchives are the real checkpoint archives of FORMAT.md section 0.
var podmanArchives = testutil.PodmanArchives

func referenceArchive(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(referenceDir, "archives", name))
	if err != nil {
		testutil.Require(t, false, fmt.Sprintf("reference archive %s: %v", name, err))
	}
	return b
}

// stagedFile is one entry of the staging directory that stage builds.
type stagedFile struct {
	rel  string
	mode fs.FileMode
	dir  bool
	size int
}

// stagedLayout is a staging directory in Podman's layout with every member,
// listed in the order Write must archive it.
var stagedLayout = []stagedFile{
	{rel: "artifacts", mode: 0o755, dir: true},
	{rel: "devshm-checkpoint.tar", mode: 0o644, size: 1536},
	{rel: "config.dump", mode: 0o600, size: 22476},
	{rel: "spec.dump", mode: 0o600, size: 19969},
	{rel: "network.status", mode: 0o600, size: 243},
	{rel: "stats-dump", mode: 0o644, size: 47},
	{rel: "ctr.log", mode: 0o600, size: 0},
	{rel: "crtool.json", mode: 0o600, size: 900},
	{rel: "bind.mounts", mode: 0o600, size: 120},
	// 0700 rather than Podman's 0600 so that the test runs without root.
	{rel: "checkpoint", mode: 0o700, dir: true},
	{rel: "checkpoint/cgroup.img", mode: 0o644, size: 4614},
	{rel: "checkpoint/core-1.img", mode: 0o644, size: 2317},
	{rel: "checkpoint/descriptors.json", mode: 0o600, size: 43},
	{rel: "checkpoint/inventory.img", mode: 0o644, size: 86},
	{rel: "checkpoint/pagemap-1.img", mode: 0o644, size: 125},
	{rel: "checkpoint/pstree.img", mode: 0o644, size: 22},
	{rel: "checkpoint/tmpfs-dev-45.tar.gz.img", mode: 0o644, size: 369},
	{rel: "checkpoint/pages-1.img", mode: 0o644, size: 300 << 10},
	{rel: "checkpoint/pages-10.img", mode: 0o644, size: 4096},
	{rel: "checkpoint/pages-2.img", mode: 0o644, size: 3 << 20},
	{rel: "checkpoint/sub", mode: 0o755, dir: true},
	{rel: "checkpoint/sub/a.img", mode: 0o644, size: 10},
	{rel: "rootfs-diff.tar", mode: 0o644, size: 2048},
	{rel: "deleted.files", mode: 0o600, size: 15},
	{rel: "aaa-extra", mode: 0o640, size: 5},
	{rel: "volumes", mode: 0o755, dir: true},
	{rel: "volumes/data.tar", mode: 0o644, size: 1024},
}

// stage builds stagedLayout in a new directory, creating the entries in an
// order unlike the archive's so that Write's ordering is really exercised.
func stage(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(1))
	mtime := time.Date(2026, 11, 28, 11, 59, 0, 0, time.UTC)
	entries := append([]stagedFile(nil), stagedLayout...)
	sort.Slice(entries, func(i, j int) bool { return entries[i].rel < entries[j].rel })
	for _, e := range entries {
		p := filepath.Join(dir, e.rel)
		if e.dir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, e.size)
		// Half random, half text: something for the compressors to do.
		rng.Read(data[:e.size/2])
		copy(data[e.size/2:], bytes.Repeat([]byte(e.rel+"\n"), e.size/(len(e.rel)+1)+1))
		if err := os.WriteFile(p, data, e.mode); err != nil {
			t.Fatal(err)
		}
	}
	// Modes and times last: creating children changes a directory's mtime.
	for i := len(entries) - 1; i >= 0; i-- {
		p := filepath.Join(dir, entries[i].rel)
		if err := os.Chmod(p, entries[i].mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime.Add(time.Duration(i)*time.Second+500*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// stagedNames is stagedLayout as tar member names.
func stagedNames() []string {
	var names []string
	for _, e := range stagedLayout {
		if e.dir {
			names = append(names, e.rel+"/")
		} else {
			names = append(names, e.rel)
		}
	}
	return names
}

// treeEntry is what compareTrees looks at.
type treeEntry struct {
	mode fs.FileMode
	data string
}

// tree lists dir's content by slash-separated relative path, dirs with "/".
func tree(t testing.TB, dir string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, dir+string(filepath.Separator)))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			out[rel+"/"] = treeEntry{mode: fi.Mode()}
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = treeEntry{mode: fi.Mode(), data: string(b)}
		default:
			out[rel] = treeEntry{mode: fi.Mode()}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// membersOf reads the tar headers of a (possibly compressed) archive with
// the standard library's and klauspost's readers, not with ours.
func membersOf(t testing.TB, archive []byte) []*tar.Header {
	t.Helper()
	c, r, err := Detect(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		r = zr
	case Zstd:
		zr, err := NewDecompressor(c, r)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	var hdrs []*tar.Header
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
	}
}

// tarEntry describes one member for makeTar; data becomes the content of
// regular files.
type tarEntry struct {
	hdr  tar.Header
	data string
}

func fileEntry(name, data string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}, data: data}
}

func dirEntry(name string, mode int64) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

// makeTar builds a plain tar archive; gz wraps it in gzip.
func makeTar(t testing.TB, gz bool, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// countdownCtx reports cancellation once Err has been asked n times, which
// lets a test cancel at an exact point of Write's progress.
type countdownCtx struct {
	context.Context
	left atomic.Int64
}

func cancelAfter(n int64) *countdownCtx {
	c := &countdownCtx{Context: context.Background()}
	c.left.Store(n)
	return c
}

func (c *countdownCtx) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// newDest makes parent/dest for Extract and parent/outside with a sentinel
// file, so that a test can check that nothing was written next to dest.
func newDest(t testing.TB) (parent, dest string) {
	t.Helper()
	parent = t.TempDir()
	dest = filepath.Join(parent, "dest")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(parent, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "outside", "sentinel"), []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	return parent, dest
}

// checkOutside fails unless parent holds only dest and the untouched
// sentinel.
func checkOutside(t testing.TB, parent string) {
	t.Helper()
	want := map[string]bool{"dest/": true, "outside/": true, "outside/sentinel": true}
	for rel, e := range tree(t, parent) {
		if strings.HasPrefix(rel, "dest/") && rel != "dest/" {
			continue
		}
		if !want[rel] {
			t.Errorf("%s was created outside the destination", rel)
		}
		if rel == "outside/sentinel" && e.data != "untouched" {
			t.Errorf("outside/sentinel was modified: %q", e.data)
		}
	}
}
