package inspect

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/testutil"
)

// Seeds come from the reference archives when they are there (in CI they
// must be); testdata/fuzz holds a few small real images for elsewhere.
const seedArchive = "bbloop-criu411-gzip.tar.gz"

// referenceSeeds returns the members of the seed archive, or nil when it is
// missing outside CI.
func referenceSeeds(f *testing.F) []tarEntry {
	f.Helper()
	p := filepath.Join(referenceDir, "archives", seedArchive)
	if _, err := os.Stat(p); err != nil {
		if testutil.InCI() {
			f.Fatalf("prerequisite missing in CI: reference archive %s: %v", seedArchive, err)
		}
		return nil
	}
	return readMembers(f, p)
}

var allKinds = []imageKind{inventoryImage, pstreeImage, coreImage, idsImage, fdinfoImage, filesImage, fsImage,
	mmImage, pagemapImage, mountsImage, statsImage, memfdImage, netnsImage, tcpStreamImage}

// FuzzDecodeImage feeds any bytes to the image decoder as every kind it
// knows: it must return entries or an error that names the member, never
// panic or allocate beyond the input.
func FuzzDecodeImage(f *testing.F) {
	for _, e := range referenceSeeds(f) {
		if strings.HasSuffix(e.name, ".img") && !isPages(e.name) && len(e.data) < 8<<10 || e.name == format.StatsDumpFile {
			f.Add(e.data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, kind := range allKinds {
			msgs, err := decodeImage("checkpoint/fuzz.img", data, kind)
			if err != nil {
				if !errors.Is(err, ErrCorruptImage) || !strings.HasPrefix(err.Error(), "checkpoint/fuzz.img: ") {
					t.Fatalf("%s: error %q does not name the member", kind.Magic, err)
				}
				continue
			}
			if len(msgs) > len(data)/4 {
				t.Fatalf("%s: %d entries from %d bytes", kind.Magic, len(msgs), len(data))
			}
		}
	})
}

// fuzzMembers are the images of pid 1 that FuzzImages mutates; the others
// of the seed archive, its memory pages included, stay as they are.
var fuzzMembers = []string{
	"checkpoint/pstree.img",
	"checkpoint/core-1.img",
	"checkpoint/files.img",
	"checkpoint/fdinfo-2.img",
	"checkpoint/mm-1.img",
	"checkpoint/pagemap-1.img",
}

// FuzzImages mutates the images that the process tree, files, sockets,
// memory and command lines are built from, inside an otherwise real
// checkpoint, and inspects it with every option: Collect must return a
// report or an error naming the archive, and the report must render.
func FuzzImages(f *testing.F) {
	seeds := referenceSeeds(f)
	byName := map[string][]byte{}
	var rest []tarEntry
	for _, e := range seeds {
		byName[e.name] = e.data
		if strings.HasPrefix(e.name, "checkpoint/") && !e.dir && !slices.Contains(fuzzMembers, e.name) {
			rest = append(rest, e)
		}
	}
	if len(seeds) > 0 {
		f.Add(byName[fuzzMembers[0]], byName[fuzzMembers[1]], byName[fuzzMembers[2]], byName[fuzzMembers[3]],
			byName[fuzzMembers[4]], byName[fuzzMembers[5]])
	} else {
		f.Add(image(f, "PSTREE", pstreeEntry(f, 1, 0)), []byte{}, []byte{}, []byte{}, []byte{}, []byte{})
	}
	f.Fuzz(func(t *testing.T, pstree, core, files, fdinfo, mm, pagemap []byte) {
		entries := append([]tarEntry(nil), rest...)
		for i, data := range [][]byte{pstree, core, files, fdinfo, mm, pagemap} {
			entries = append(entries, tarEntry{name: fuzzMembers[i], data: data})
		}
		archive := makeTar(t, entries)
		r, err := CollectReader(context.Background(), bytes.NewReader(archive), "fuzz.tar", All())
		if err != nil {
			if !strings.HasPrefix(err.Error(), "inspect fuzz.tar: ") {
				t.Fatalf("error %q does not name the archive", err)
			}
			return
		}
		if err := RenderTree(io.Discard, r, RenderOptions{Color: true}); err != nil {
			t.Fatal(err)
		}
		if err := RenderJSON(io.Discard, r); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzCollectArchive feeds any bytes to Collect as an archive.
func FuzzCollectArchive(f *testing.F) {
	var small []tarEntry
	for _, e := range referenceSeeds(f) {
		if !isPages(e.name) && len(e.data) < 8<<10 {
			small = append(small, e)
		}
	}
	if len(small) > 0 {
		tarball := makeTar(f, small)
		f.Add(tarball)
		f.Add(tarball[:len(tarball)/2])
	}
	f.Add(makeTar(f, []tarEntry{{name: "checkpoint/pstree.img", data: image(f, "PSTREE", pstreeEntry(f, 1, 0))}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := CollectReader(context.Background(), bytes.NewReader(data), "fuzz.tar", All())
		if err != nil {
			return
		}
		if err := RenderTree(io.Discard, r, RenderOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := RenderJSON(io.Discard, r); err != nil {
			t.Fatal(err)
		}
	})
}
