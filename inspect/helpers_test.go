package inspect

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/testutil"
)

// referenceDir holds the real Podman archives the tests read.
var referenceDir = testutil.ReferenceDir()

// podmanArchives are the real checkpoint archives of FORMAT.md section 0.
var podmanArchives = testutil.PodmanArchives

// referencePath returns the path of a reference archive; a missing one
// skips the test, or fails it in CI.
func referencePath(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(referenceDir, "archives", name)
	_, err := os.Stat(p)
	testutil.Require(t, err == nil, fmt.Sprintf("reference archive %s: %v", name, err))
	return p
}

// tarEntry is one member for makeTar; a nil data with dir makes a directory.
type tarEntry struct {
	name string
	data []byte
	dir  bool
}

// readMembers returns the regular members of an archive in their order.
func readMembers(t testing.TB, path string) []tarEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []tarEntry
	err = archive.Walk(context.Background(), f, func(hdr *tar.Header, body io.Reader) error {
		if hdr.Typeflag == tar.TypeDir {
			out = append(out, tarEntry{name: hdr.Name, dir: true})
			return nil
		}
		b, err := io.ReadAll(body)
		out = append(out, tarEntry{name: hdr.Name, data: b})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// memberData returns one member of a reference archive.
func memberData(t testing.TB, archive, member string) []byte {
	t.Helper()
	for _, e := range readMembers(t, referencePath(t, archive)) {
		if e.name == member {
			return e.data
		}
	}
	t.Fatalf("%s has no member %s", archive, member)
	return nil
}

// makeTar builds a plain tar archive of entries, in their order.
func makeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2026, 11, 28, 12, 1, 6, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg, ModTime: mtime}
		if e.dir {
			h = &tar.Header{Name: e.name, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: mtime}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeFile writes b to a new file in a temporary directory.
func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// unpack extracts an archive into a new directory.
func unpack(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	if _, err := archive.Extract(context.Background(), f, dir, archive.ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// crtoolArchive builds an archive as crtool writes it: the checkpoint
// images of a Podman archive plus crtool.json, packed by images.Write,
// which puts the memory pages last.
func crtoolArchive(t testing.TB, podman string, md *format.Metadata, c archive.Compression) string {
	t.Helper()
	dir := unpack(t, referencePath(t, podman))
	for _, n := range []string{format.RootfsDiffTar, format.DeletedFilesFile, format.DevShmCheckpointTar} {
		os.Remove(filepath.Join(dir, n))
	}
	if err := format.WriteMetadata(dir, md); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "crtool.tar")
	if _, err := archive.WriteFile(context.Background(), out, dir, archive.WriteOptions{Compression: c}); err != nil {
		t.Fatal(err)
	}
	return out
}

// process finds a process of the report by PID.
func process(t testing.TB, r *Report, pid uint32) Process {
	t.Helper()
	for _, p := range r.Processes {
		if p.PID == pid {
			return p
		}
	}
	t.Fatalf("no process %d in %v", pid, pids(r))
	return Process{}
}

func pids(r *Report) []uint32 {
	var out []uint32
	for _, p := range r.Processes {
		out = append(out, p.PID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func mkfifo(path string) error { return unix.Mkfifo(path, 0o644) }

func bufioWriter(w io.Writer) *bufio.Writer { return bufio.NewWriter(w) }
