package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/safefs"
)

// Open opens the archive at path for Extract or Walk, with its size (-1
// when unknown); format.Stdio is standard input, which closing the result
// leaves open.
func Open(path string) (io.ReadCloser, int64, error) {
	if path == format.Stdio {
		return io.NopCloser(os.Stdin), -1, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, nil
}

// Walk calls fn for each member of the archive read from r (any
// compression) without extracting anything. hdr.Name is checked as Extract
// checks it and normalized: relative, no "./" prefix, directories end in
// "/". Only regular files and directories reach fn; any other member type is
// an error. body yields the member's content; fn need not read it all.
// If fn returns ErrStop, Walk stops reading and returns nil; any other error
// from fn is returned as is.
func Walk(ctx context.Context, r io.Reader, fn func(hdr *tar.Header, body io.Reader) error) error {
	a, err := openArchive(ctx, r, math.MaxInt64, DefaultMaxFiles)
	if err != nil {
		return err
	}
	defer a.close()
	for {
		hdr, err := a.next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		err = fn(hdr, &bodyReader{a: a, name: hdr.Name})
		if errors.Is(err, ErrStop) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Size of a tar block: headers, data padding and the end marker count in it.
const blockSize = 512

// drainLimit bounds how much of a compressed stream is read past the tar end
// marker to reach the stream's checksum.
const drainLimit = 1 << 20

// archiveReader iterates over the members of a checkpoint archive and turns
// every way of reading it failing into a descriptive error.
type archiveReader struct {
	comp Compression
	src  *srcReader
	dec  io.ReadCloser
	cr   *countReader
	tr   *tar.Reader
	last string // name of the last member returned
	// end is the stream offset where the last header's data and padding
	// end; a complete archive has its two zero blocks right after.
	end int64
	// headers counts every header, skipped ones included, against
	// maxHeaders: a stream of "./" entries creates nothing, so no other
	// count would ever stop it.
	headers, maxHeaders int
	skipped             int
}

// maxSkipped bounds the headers next skips (the "./" root entry, PAX
// global headers): a real archive has one or two.
const maxSkipped = 64

func openArchive(ctx context.Context, r io.Reader, limit int64, maxMembers int) (*archiveReader, error) {
	src := &srcReader{r: r}
	c, br, err := Detect(src)
	if err != nil {
		return nil, err
	}
	dec, err := NewDecompressor(c, br)
	if err != nil {
		if src.err != nil {
			return nil, fmt.Errorf("read archive: %w", src.err)
		}
		return nil, err
	}
	cr := &countReader{ctx: ctx, r: dec, limit: limit}
	return &archiveReader{comp: c, src: src, dec: dec, cr: cr, tr: tar.NewReader(cr), maxHeaders: maxMembers + maxSkipped}, nil
}

func (a *archiveReader) close() { a.dec.Close() }

// next returns the next member to act on, or io.EOF after a complete
// archive. The root entry of `tar -C dir .` archives and PAX global headers
// are skipped.
func (a *archiveReader) next(ctx context.Context) (*tar.Header, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		hdr, err := a.tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, a.finish()
		}
		if err != nil {
			return nil, a.fail(a.after(), err)
		}
		if a.headers++; a.headers > a.maxHeaders {
			return nil, fmt.Errorf("%w: more than %d tar headers", ErrLimit, a.maxHeaders)
		}
		name, skip, err := checkMember(hdr)
		if err != nil {
			return nil, err
		}
		if skip {
			if a.skipped++; a.skipped > maxSkipped {
				return nil, fmt.Errorf("%w: more than %d root or global headers", ErrLimit, maxSkipped)
			}
		}
		var data int64
		if hdr.Typeflag == tar.TypeReg {
			data = hdr.Size
		}
		a.end = roundBlock(a.cr.n + data)
		if skip {
			continue
		}
		hdr.Name = name
		a.last = name
		return hdr, nil
	}
}

// finish checks that the archive really ended rather than stopping at a
// member boundary, which archive/tar takes for a normal end.
func (a *archiveReader) finish() error {
	if a.cr.n < a.end+2*blockSize {
		return a.fail(a.after(), errors.New("end-of-archive marker missing"))
	}
	if a.comp != None {
		// Only the stream's checksum catches flipped bits in file
		// content, and it comes after the tar end marker.
		if _, err := io.CopyN(io.Discard, a.dec, drainLimit); err != nil && !errors.Is(err, io.EOF) {
			return a.fail("after the end of the tar archive", err)
		}
	}
	return io.EOF
}

func (a *archiveReader) after() string {
	if a.last == "" {
		return ""
	}
	return "after " + a.last
}

// fail describes a failure to read the archive at where.
func (a *archiveReader) fail(where string, err error) error {
	if errors.Is(err, ErrLimit) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if a.src.err != nil {
		if where == "" {
			return fmt.Errorf("read archive: %w", a.src.err)
		}
		return fmt.Errorf("read archive %s: %w", where, a.src.err)
	}
	return &corruptError{where: where, err: err}
}

func roundBlock(n int64) int64 {
	return (n + blockSize - 1) / blockSize * blockSize
}

// checkMember vets a header before anything acts on it and returns its
// normalized name; skip is set for entries that create nothing.
func checkMember(hdr *tar.Header) (name string, skip bool, err error) {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir:
	case tar.TypeXGlobalHeader:
		return "", true, nil
	case tar.TypeSymlink:
		return "", false, unsafeMember(hdr.Name, "symbolic links are not allowed")
	case tar.TypeLink:
		return "", false, unsafeMember(hdr.Name, "hard links are not allowed")
	case tar.TypeChar:
		return "", false, unsafeMember(hdr.Name, "character devices are not allowed")
	case tar.TypeBlock:
		return "", false, unsafeMember(hdr.Name, "block devices are not allowed")
	case tar.TypeFifo:
		return "", false, unsafeMember(hdr.Name, "fifos are not allowed")
	default:
		return "", false, unsafeMember(hdr.Name, fmt.Sprintf("unsupported member type %q", hdr.Typeflag))
	}
	for k := range hdr.PAXRecords {
		// A sparse file's size in its header is not what follows it in the
		// stream, and crtool never writes one.
		if strings.HasPrefix(k, "GNU.sparse.") {
			return "", false, unsafeMember(hdr.Name, "sparse files are not supported")
		}
	}
	dir := hdr.Typeflag == tar.TypeDir
	name, err = cleanName(hdr.Name, dir)
	if err != nil {
		return "", false, err
	}
	if name == "" {
		if !dir {
			return "", false, unsafeMember(hdr.Name, "a file cannot be the archive root")
		}
		return "", true, nil
	}
	if dir {
		name += "/"
	}
	return name, false, nil
}

// cleanName returns raw as a clean relative path without "./" prefix or
// trailing slash; "" stands for the archive root ("./").
func cleanName(raw string, dir bool) (string, error) {
	if raw == "" {
		return "", unsafeMember(raw, "empty name")
	}
	if strings.HasSuffix(raw, "/") && !dir {
		return "", unsafeMember(raw, "file name ends in /")
	}
	name, err := safefs.CleanName(raw)
	if err != nil {
		return "", fmt.Errorf("archive member %q: %w", raw, err)
	}
	return name, nil
}

func unsafeMember(name, why string) error {
	return fmt.Errorf("%w: archive member %q: %s", safefs.ErrUnsafe, name, why)
}

// bodyReader is a member's content as Walk hands it out.
type bodyReader struct {
	a    *archiveReader
	name string
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.a.tr.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		where := ""
		if b.name != "" {
			where = "in " + b.name
		}
		err = b.a.fail(where, err)
	}
	return n, err
}

// srcReader remembers the first error of the underlying reader, so that an
// I/O error is not reported as a corrupt archive.
type srcReader struct {
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// countReader counts the decompressed tar stream and cuts it at limit: tar
// headers alone (long-name chains, "./" entries) can make a small
// compressed file expand forever without creating a byte of file content,
// and without archive/tar returning to its caller. For the same reason it
// looks at ctx every ctxEvery bytes.
type countReader struct {
	ctx       context.Context
	r         io.Reader
	n         int64
	limit     int64
	nextCheck int64
}

const ctxEvery = 4 << 20

func (c *countReader) Read(p []byte) (int, error) {
	if c.n >= c.nextCheck {
		if err := c.ctx.Err(); err != nil {
			return 0, err
		}
		c.nextCheck = c.n + ctxEvery
	}
	if c.n >= c.limit {
		return 0, fmt.Errorf("%w: tar stream longer than %d bytes", ErrLimit, c.limit)
	}
	if int64(len(p)) > c.limit-c.n {
		p = p[:c.limit-c.n]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
