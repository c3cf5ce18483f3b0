package pageserver

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/encoding/protowire"
)

// Image magics (criu/include/magic.h): every pagemap starts with the
// common magic and its own.
const (
	imgCommonMagic = 0x54564319
	pagemapMagic   = 0x56084025
)

// PagesName is the name of the pages image a pagemap's head points to.
func PagesName(pagesID uint32) string { return fmt.Sprintf("pages-%d.img", pagesID) }

// Images is a Sink that writes what CRIU would have written itself:
// pagemap-*.img into Dir and, for each, a pages-N.img that Pages creates
// (by default a file in Dir as well). A pages image is complete when its
// writer has been closed without error.
type Images struct {
	Dir string
	// Pages creates the pages image name; nil creates it in Dir.
	Pages func(name string) (io.WriteCloser, error)

	nextID  uint32
	seen    map[Image]bool
	pm      *os.File
	pmw     *bufio.Writer
	pages   io.WriteCloser
	buf     []byte
	entry   []byte
	written int64
}

// Written is how many bytes of pages have been received.
func (s *Images) Written() int64 { return s.written }

// Open implements Sink.
func (s *Images) Open(img Image) error {
	if err := s.end(); err != nil {
		return err
	}
	if s.seen == nil {
		s.seen = make(map[Image]bool)
	}
	if s.seen[img] {
		return fmt.Errorf("page server: criu sent the pages of %s twice", img)
	}
	s.seen[img] = true
	s.nextID++
	id := s.nextID
	f, err := os.OpenFile(filepath.Join(s.Dir, img.PagemapName()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("page server: %w", err)
	}
	s.pm, s.pmw = f, bufio.NewWriterSize(f, 64<<10)
	var magic [8]byte
	binary.LittleEndian.PutUint32(magic[0:], imgCommonMagic)
	binary.LittleEndian.PutUint32(magic[4:], pagemapMagic)
	s.pmw.Write(magic[:])
	// pagemap_head { required uint32 pages_id = 1; }
	s.writeEntry(protowire.AppendVarint(protowire.AppendTag(s.entry[:0], 1, protowire.VarintType), uint64(id)))
	name := PagesName(id)
	if s.Pages != nil {
		s.pages, err = s.Pages(name)
	} else {
		s.pages, err = os.OpenFile(filepath.Join(s.Dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return fmt.Errorf("page server: %s: %w", name, err)
	}
	return nil
}

// Add implements Sink.
func (s *Images) Add(e Entry, pages io.Reader) error {
	if s.pm == nil {
		return fmt.Errorf("page server: pages at %#x before any pagemap was opened", e.Vaddr)
	}
	// pagemap_entry as CRIU 4 writes it: vaddr = 1, compat_nr_pages = 2
	// (required, left 0), flags = 4, nr_pages = 5.
	b := s.entry[:0]
	b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), e.Vaddr)
	b = protowire.AppendVarint(protowire.AppendTag(b, 2, protowire.VarintType), 0)
	b = protowire.AppendVarint(protowire.AppendTag(b, 4, protowire.VarintType), uint64(e.Flags))
	b = protowire.AppendVarint(protowire.AppendTag(b, 5, protowire.VarintType), e.NrPages)
	s.writeEntry(b)
	if pages == nil {
		return nil
	}
	if s.buf == nil {
		s.buf = make([]byte, 1<<20)
	}
	n, err := io.CopyBuffer(s.pages, pages, s.buf)
	s.written += n
	if err != nil {
		return fmt.Errorf("page server: pages at %#x: %w", e.Vaddr, err)
	}
	return nil
}

// writeEntry appends one size-prefixed protobuf message; errors surface
// at the flush.
func (s *Images) writeEntry(b []byte) {
	var size [4]byte
	binary.LittleEndian.PutUint32(size[:], uint32(len(b)))
	s.pmw.Write(size[:])
	s.pmw.Write(b)
	s.entry = b
}

// end completes the open pagemap and its pages.
func (s *Images) end() error {
	if s.pm == nil {
		return nil
	}
	name := s.pm.Name()
	err := s.pmw.Flush()
	if cerr := s.pm.Close(); err == nil {
		err = cerr
	}
	s.pm, s.pmw = nil, nil
	if perr := s.pages.Close(); err == nil {
		err = perr
	}
	s.pages = nil
	if err != nil {
		return fmt.Errorf("page server: %s: %w", filepath.Base(name), err)
	}
	return nil
}

// Close implements Sink.
func (s *Images) Close() error { return s.end() }

// Abort closes whatever is open after a failed transfer.
func (s *Images) Abort() {
	if s.pm != nil {
		s.pm.Close()
		s.pm = nil
	}
	if s.pages != nil {
		s.pages.Close()
		s.pages = nil
	}
}
