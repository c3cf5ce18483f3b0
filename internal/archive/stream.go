package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"time"
)

// Stream builds an archive member by member while its content is still
// being produced: CRIU's pages arrive over the page server while CRIU
// dumps, and their size is known only at the end. Each such member's tar
// header is written as a placeholder and rewritten at Commit, which needs a
// seekable output; in a compressed archive the header sits alone in a
// stored gzip member or a raw zstd frame so that it can be rewritten in
// place, and the content follows in ordinary compressed members or frames.
// gzip -d, zstd -d, tar and Podman read the result like any archive.
//
// Methods must be called from one goroutine at a time.
type Stream struct {
	t    *tempFile
	c    Compression
	out  *gateWriter    // counts, to know each placeholder's offset
	sec  io.WriteCloser // the compressed section being written, or nil
	open *streamMember
	// patches are the headers to rewrite at Commit.
	patches []patch
	st      WriteStats
	o       WriteOptions
	err     error // the first failure; every later call returns it
	done    int64 // bytes of streamed content, for Progress
	// digests are the members' SHA-256 for the manifest (o.Manifest).
	digests map[string]string
}

type patch struct {
	off    int64 // where the tar header block starts in the file
	crcOff int64 // gzip: where the stored member's CRC-32 is; else -1
	hdr    *tar.Header
}

// CreateStream starts an archive at path (not format.Stdio: the headers are
// rewritten in place), built in a temporary file until Commit.
func CreateStream(path string, o WriteOptions) (*Stream, error) {
	t, err := createTemp(path)
	if err != nil {
		return nil, err
	}
	s := &Stream{t: t, c: o.Compression, o: o}
	if o.Manifest {
		s.digests = map[string]string{}
	}
	s.out = &gateWriter{w: t.w}
	return s, nil
}

// section returns the open compressed section, starting one if needed.
func (s *Stream) section() (io.Writer, error) {
	if s.sec == nil {
		comp, err := NewCompressor(s.c, s.out, 0)
		if err != nil {
			return nil, err
		}
		s.sec = comp
	}
	return s.sec, nil
}

// endSection completes the open compressed section (its gzip trailer or
// zstd frame end), so that the next byte's offset in the file is known.
func (s *Stream) endSection() error {
	if s.sec == nil {
		return nil
	}
	err := s.sec.Close()
	s.sec = nil
	if err != nil {
		return fmt.Errorf("%s: %w", s.c, err)
	}
	return nil
}

func (s *Stream) fail(err error) error {
	if s.err == nil {
		s.err = err
	}
	return err
}

// AddDir adds a directory member rel with fi's mode and time.
func (s *Stream) AddDir(rel string, fi fs.FileInfo) error {
	if s.err != nil {
		return s.err
	}
	if s.open != nil {
		return errors.New("archive stream: a member is still open")
	}
	w, err := s.section()
	if err != nil {
		return s.fail(err)
	}
	b, err := headerBlock(header(rel+"/", fi))
	if err == nil {
		_, err = w.Write(b)
	}
	if err != nil {
		return s.fail(fmt.Errorf("%s: %w", rel, err))
	}
	s.st.Members++
	return nil
}

// Create starts a regular file member rel (mode 0600) whose size is what is
// written to it before Close. Only one member is open at a time.
func (s *Stream) Create(rel string) (io.WriteCloser, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.open != nil {
		return nil, errors.New("archive stream: a member is still open")
	}
	if err := s.endSection(); err != nil {
		return nil, s.fail(err)
	}
	p := patch{off: s.out.n.Load(), crcOff: -1, hdr: &tar.Header{
		Typeflag: tar.TypeReg, Name: rel, Mode: 0o600 | tarModeReg,
		ModTime: time.Now().Truncate(time.Second), Uname: "root", Gname: "root",
	}}
	var err error
	switch s.c {
	case None:
		_, err = s.out.Write(make([]byte, blockSize))
	case Gzip:
		var b []byte
		b, p.off, p.crcOff = storedGzip()
		p.off += s.out.n.Load()
		p.crcOff += s.out.n.Load()
		_, err = s.out.Write(b)
	case Zstd:
		var b []byte
		b, p.off = rawZstd()
		p.off += s.out.n.Load()
		_, err = s.out.Write(b)
	}
	if err != nil {
		return nil, s.fail(fmt.Errorf("%s: %w", rel, err))
	}
	s.open = &streamMember{s: s, patch: p}
	if s.digests != nil {
		s.open.h = sha256.New()
	}
	return s.open, nil
}

// streamMember is the content of the open member.
type streamMember struct {
	s      *Stream
	patch  patch
	size   int64
	closed bool
	h      hash.Hash // the content's SHA-256, for the manifest
}

func (m *streamMember) Write(p []byte) (int, error) {
	s := m.s
	if s.err != nil {
		return 0, s.err
	}
	if m.closed {
		return 0, fmt.Errorf("%s: write after close", m.patch.hdr.Name)
	}
	w, err := s.section()
	if err != nil {
		return 0, s.fail(err)
	}
	n, err := w.Write(p)
	if m.h != nil {
		m.h.Write(p[:n])
	}
	m.size += int64(n)
	s.st.InputBytes += int64(n)
	if err != nil {
		return n, s.fail(fmt.Errorf("%s: %w", m.patch.hdr.Name, err))
	}
	if s.o.Progress != nil {
		s.done += int64(n)
		s.o.Progress(s.done, -1)
	}
	return n, nil
}

// Close pads the member to a whole block and ends its section.
func (m *streamMember) Close() error {
	s := m.s
	if m.closed {
		return nil
	}
	m.closed = true
	s.open = nil
	if s.err != nil {
		return s.err
	}
	if pad := roundBlock(m.size) - m.size; pad > 0 {
		w, err := s.section()
		if err == nil {
			_, err = w.Write(make([]byte, pad))
		}
		if err != nil {
			return s.fail(fmt.Errorf("%s: %w", m.patch.hdr.Name, err))
		}
	}
	if err := s.endSection(); err != nil {
		return s.fail(err)
	}
	m.patch.hdr.Size = m.size
	s.patches = append(s.patches, m.patch)
	if m.h != nil {
		s.digests[m.patch.hdr.Name] = hex.EncodeToString(m.h.Sum(nil))
	}
	s.st.Members++
	return nil
}

// AddTree adds the staged directory srcDir as WriteFile would, leaving out
// the members skip names (slash-separated, relative to srcDir), and ends
// the tar archive.
func (s *Stream) AddTree(ctx context.Context, srcDir string, skip func(rel string) bool) error {
	if s.err != nil {
		return s.err
	}
	if s.open != nil {
		return errors.New("archive stream: a member is still open")
	}
	members, err := plan(srcDir)
	if err != nil {
		return s.fail(err)
	}
	kept := members[:0]
	for _, m := range members {
		if skip == nil || !skip(m.rel) {
			kept = append(kept, m)
		}
	}
	w, err := s.section()
	if err != nil {
		return s.fail(err)
	}
	tw := tar.NewWriter(w)
	var st WriteStats
	if err := writeMembers(ctx, tw, srcDir, kept, &st, progressOf(srcDir, kept, s.o.Progress), s.digests); err != nil {
		return s.fail(err)
	}
	if s.digests != nil {
		if err := writeManifest(tw, s.digests); err != nil {
			return s.fail(err)
		}
		st.Members++
	}
	if err := tw.Close(); err != nil {
		return s.fail(err)
	}
	s.st.Members += st.Members
	s.st.InputBytes += st.InputBytes
	if err := s.endSection(); err != nil {
		return s.fail(err)
	}
	return nil
}

// Commit rewrites the placeholders with the members' real headers, syncs the
// file and renames it over the archive's path. AddTree must have ended the
// archive.
func (s *Stream) Commit(ctx context.Context) (WriteStats, error) {
	if s.err != nil {
		return s.st, s.err
	}
	if s.open != nil || s.sec != nil {
		return s.st, errors.New("archive stream: commit before the archive was ended")
	}
	s.st.OutputBytes = s.out.n.Load()
	err := s.t.commit(ctx, func(f *os.File) error {
		for _, p := range s.patches {
			b, err := headerBlock(p.hdr)
			if err != nil {
				return fmt.Errorf("%s: %w", p.hdr.Name, err)
			}
			if _, err := f.WriteAt(b, p.off); err != nil {
				return fmt.Errorf("%s: rewrite header: %w", p.hdr.Name, err)
			}
			if p.crcOff >= 0 {
				var crc [4]byte
				binary.LittleEndian.PutUint32(crc[:], crc32.ChecksumIEEE(b))
				if _, err := f.WriteAt(crc[:], p.crcOff); err != nil {
					return fmt.Errorf("%s: rewrite header: %w", p.hdr.Name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return s.st, s.fail(err)
	}
	return s.st, nil
}

// Abort removes the unfinished archive; after Commit it does nothing.
func (s *Stream) Abort() {
	if s.sec != nil {
		// Only to stop the compressor's goroutines; nothing more
		// reaches the file.
		s.out.shut.Store(true)
		s.sec.Close()
		s.sec = nil
	}
	s.t.abort()
	s.fail(errors.New("archive abandoned"))
}

// headerBlock encodes one tar header. A placeholder has exactly one block,
// so the header must fit in one: GNU's base-256 size field takes members of
// 8 GiB and more, where ustar would need a PAX record.
func headerBlock(h *tar.Header) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hh := *h
	if hh.Size >= 1<<33 {
		hh.Format = tar.FormatGNU
	}
	if err := tw.WriteHeader(&hh); err != nil {
		return nil, err
	}
	if buf.Len() != blockSize {
		return nil, fmt.Errorf("tar header of %d bytes does not fit one block", buf.Len())
	}
	return buf.Bytes(), nil
}

// storedGzip is a gzip member holding one block of zeros as a stored
// (uncompressed) deflate block, and where in it the block and its CRC-32
// are. The ISIZE stays 512 whatever the block becomes.
func storedGzip() (b []byte, blockOff, crcOff int64) {
	b = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff} // no flags, no mtime, unknown OS
	// BFINAL=1, BTYPE=00 (stored), then LEN and its complement.
	b = append(b, 0x01, 0x00, 0x02, 0xff, 0xfd)
	blockOff = int64(len(b))
	b = append(b, make([]byte, blockSize)...)
	crcOff = int64(len(b))
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(make([]byte, blockSize)))
	b = binary.LittleEndian.AppendUint32(b, blockSize)
	return b, blockOff, crcOff
}

// rawZstd is a zstd frame holding one block of zeros as a raw block, and
// where in it the block is: single-segment, 2-byte content size (512-256),
// no checksum, so the block can change without touching anything else.
func rawZstd() (b []byte, blockOff int64) {
	b = []byte{0x28, 0xb5, 0x2f, 0xfd, 0x60}
	b = binary.LittleEndian.AppendUint16(b, blockSize-256)
	// Block header: last block, type raw, size 512.
	bh := uint32(1 | 0<<1 | blockSize<<3)
	b = append(b, byte(bh), byte(bh>>8), byte(bh>>16))
	blockOff = int64(len(b))
	b = append(b, make([]byte, blockSize)...)
	return b, blockOff
}
