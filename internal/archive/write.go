package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/safefs"
)

// WriteStats describes an archive that WriteFile produced.
type WriteStats struct {
	Members     int   // tar entries, directories included
	InputBytes  int64 // bytes of file content archived
	OutputBytes int64 // bytes written to the destination, after compression
}

// TempSuffix follows ".NAME" in the temporary file an archive NAME is
// written to before it is renamed into place.
const TempSuffix = ".crtool-tmp-"

// copyChunk is the size of the buffers between archive and files.
const copyChunk = 1 << 20

// member is one entry of a staged checkpoint directory.
type member struct {
	rel string // slash-separated path below the staging directory
	dir bool
}

// WriteOptions configure WriteFile.
type WriteOptions struct {
	Compression Compression
	// Progress, when set, is called as file content is archived with the
	// bytes done and the total, at most every copy chunk (1 MiB).
	Progress func(done, total int64)
	// Manifest appends format.ManifestFile, the SHA-256 of every file
	// archived, computed as it is copied.
	Manifest bool
}

// write streams the staged checkpoint directory srcDir as a tar archive,
// compressed as o says, into w, reading each file as it goes. Members come
// in Podman's order (see topLevelOrder), and inside each directory regular
// files come first, CRIU's pages-*.img last among them, then
// subdirectories: a reader that needs only metadata and small images can
// stop early.
//
// On error, including cancellation of ctx, w has received a prefix of the
// archive that never ends in a valid compressed stream or tar end marker, so
// no reader mistakes it for a complete archive. w is not buffered here.
func write(ctx context.Context, w io.Writer, srcDir string, o WriteOptions) (WriteStats, error) {
	var st WriteStats
	c := o.Compression
	members, err := plan(srcDir)
	if err != nil {
		return st, err
	}
	gate := &gateWriter{w: w}
	comp, err := NewCompressor(c, gate, 0)
	if err != nil {
		return st, err
	}
	tw := tar.NewWriter(comp)
	var digests map[string]string
	if o.Manifest {
		digests = map[string]string{}
	}
	err = writeMembers(ctx, tw, srcDir, members, &st, progressOf(srcDir, members, o.Progress), digests)
	if err == nil && o.Manifest {
		err = writeManifest(tw, digests)
		st.Members++
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		// Close only to stop the compressor's goroutines: the gate drops
		// the trailer, which would otherwise make the prefix look whole.
		gate.shut.Store(true)
		comp.Close()
		st.OutputBytes = gate.n.Load()
		return st, err
	}
	err = comp.Close()
	st.OutputBytes = gate.n.Load()
	if err != nil {
		return st, fmt.Errorf("%s: %w", c, err)
	}
	return st, nil
}

// WriteFile writes the archive of srcDir to path atomically: the archive is
// built in a temporary file next to path, synced, and renamed over path,
// which it replaces like mv(1) when the whole archive is written. On any
// error or cancellation the temporary file is removed and path is left as it
// was; the one exception is a failure to sync the directory after the rename,
// when a replaced file cannot be brought back (a new one is removed). The
// file has mode 0600: a checkpoint holds the process's memory.
// A path of format.Stdio writes to standard output instead.
func WriteFile(ctx context.Context, path, srcDir string, o WriteOptions) (WriteStats, error) {
	if path == format.Stdio {
		bw := bufio.NewWriterSize(os.Stdout, copyChunk)
		st, err := write(ctx, bw, srcDir, o)
		if err != nil {
			return st, fmt.Errorf("write archive to stdout: %w", err)
		}
		if err := bw.Flush(); err != nil {
			return st, fmt.Errorf("write archive to stdout: %w", err)
		}
		return st, nil
	}

	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+TempSuffix+"*")
	if err != nil {
		return WriteStats{}, fmt.Errorf("write archive %s: %w", path, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()

	bw, err := newDirectWriter(f)
	if err != nil {
		return WriteStats{}, fmt.Errorf("write archive %s: %w", path, err)
	}
	defer bw.Close()
	st, err := write(ctx, bw, srcDir, o)
	if err != nil {
		return st, fmt.Errorf("write archive %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("write archive %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return st, fmt.Errorf("write archive %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return st, fmt.Errorf("write archive %s: %w", path, err)
	}
	// Past the rename the archive is in place; a late cancellation must
	// not leave the caller believing nothing happened.
	if err := ctx.Err(); err != nil {
		return st, fmt.Errorf("write archive %s: %w", path, err)
	}
	_, statErr := os.Lstat(path)
	existed := statErr == nil
	if err := os.Rename(tmp, path); err != nil {
		return st, fmt.Errorf("write archive %s: %w", path, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		// Without a synced directory the rename may not survive a crash.
		// A new name is taken back so that the error means "no archive";
		// a replaced file cannot be brought back.
		if !existed {
			os.Remove(path)
		}
		return st, fmt.Errorf("write archive %s: sync directory: %w", path, err)
	}
	return st, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// gateWriter passes bytes on until shut, counting them. Compressors call
// Write from their own goroutines, hence the atomics.
type gateWriter struct {
	w    io.Writer
	n    atomic.Int64
	shut atomic.Bool
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.shut.Load() {
		return 0, errors.New("archive abandoned")
	}
	n, err := g.w.Write(p)
	g.n.Add(int64(n))
	return n, err
}

// plan lists srcDir's members in archive order. Listing everything before
// writing anything catches unsupported files before a byte is written.
func plan(srcDir string) ([]member, error) {
	entries, err := os.ReadDir(srcDir)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]fs.DirEntry, len(entries))
	for _, e := range entries {
		byName[e.Name()] = e
	}
	var ordered []fs.DirEntry
	for _, name := range topLevelOrder {
		e, ok := byName[name]
		if !ok {
			continue
		}
		if e.IsDir() != topLevelDirs[name] {
			want := "regular file"
			if topLevelDirs[name] {
				want = "directory"
			}
			return nil, fmt.Errorf("%s: not a %s", filepath.Join(srcDir, name), want)
		}
		ordered = append(ordered, e)
		delete(byName, name)
	}
	for _, e := range entries { // ReadDir sorts by name
		if _, ok := byName[e.Name()]; ok {
			ordered = append(ordered, e)
		}
	}

	var out []member
	for _, e := range ordered {
		if out, err = planEntry(out, srcDir, e.Name(), e); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func planEntry(out []member, srcDir, rel string, e fs.DirEntry) ([]member, error) {
	switch {
	case e.Type().IsRegular():
		return append(out, member{rel: rel}), nil
	case e.IsDir():
		return planDir(append(out, member{rel: rel, dir: true}), srcDir, rel)
	}
	return nil, fmt.Errorf("%s: not a regular file or directory (%s)", filepath.Join(srcDir, filepath.FromSlash(rel)), e.Type())
}

func planDir(out []member, srcDir, rel string) ([]member, error) {
	entries, err := os.ReadDir(filepath.Join(srcDir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	var files, pages, dirs []fs.DirEntry
	for _, e := range entries {
		switch {
		case e.IsDir():
			dirs = append(dirs, e)
		case format.IsPagesImage(e.Name()):
			pages = append(pages, e)
		default:
			files = append(files, e)
		}
	}
	for _, group := range [][]fs.DirEntry{files, pages, dirs} {
		for _, e := range group {
			if out, err = planEntry(out, srcDir, path.Join(rel, e.Name()), e); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// progress reports archived bytes against the total of the plan.
type progress struct {
	fn          func(done, total int64)
	done, total int64
}

func (p *progress) add(n int64) {
	if p == nil {
		return
	}
	p.done += n
	p.fn(p.done, p.total)
}

func progressOf(srcDir string, members []member, fn func(done, total int64)) *progress {
	if fn == nil {
		return nil
	}
	p := &progress{fn: fn}
	for _, m := range members {
		if fi, err := os.Lstat(filepath.Join(srcDir, filepath.FromSlash(m.rel))); err == nil && !m.dir {
			p.total += fi.Size()
		}
	}
	return p
}

// writeMembers archives members; digests, when not nil, receives the
// SHA-256 of each file.
func writeMembers(ctx context.Context, tw *tar.Writer, srcDir string, members []member, st *WriteStats, pr *progress, digests map[string]string) error {
	buf := make([]byte, 256<<10)
	for _, m := range members {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(srcDir, filepath.FromSlash(m.rel))
		var err error
		if m.dir {
			err = writeDir(tw, p, m.rel)
		} else {
			var n int64
			var sum []byte
			n, sum, err = writeFile(ctx, tw, p, m.rel, buf, pr, digests != nil)
			st.InputBytes += n
			if digests != nil {
				digests[m.rel] = hex.EncodeToString(sum)
			}
		}
		if err != nil {
			return err
		}
		st.Members++
	}
	return nil
}

func writeDir(tw *tar.Writer, p, rel string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: no longer a directory", p)
	}
	if err := tw.WriteHeader(header(rel+"/", fi)); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	return nil
}

// writeFile archives one regular file and returns how many bytes it
// copied and, when digest is set, their SHA-256.
func writeFile(ctx context.Context, tw *tar.Writer, p, rel string, buf []byte, pr *progress, digest bool) (int64, []byte, error) {
	// O_NOFOLLOW and O_NONBLOCK: a file swapped for a symlink or a fifo
	// since plan must fail here rather than be followed or block.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	if !fi.Mode().IsRegular() {
		return 0, nil, fmt.Errorf("%s: no longer a regular file", p)
	}
	if err := tw.WriteHeader(header(rel, fi)); err != nil {
		return 0, nil, fmt.Errorf("%s: %w", rel, err)
	}
	var dst io.Writer = tw
	var h hash.Hash
	if digest {
		h = sha256.New()
		dst = io.MultiWriter(tw, h)
	}
	n, err := copyExactly(ctx, dst, f, fi.Size(), buf, pr)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return n, nil, fmt.Errorf("%s: file shrank while being archived", p)
		}
		return n, nil, fmt.Errorf("%s: %w", p, err)
	}
	// A file that grew would be archived cut short without this check.
	if m, _ := f.Read(buf[:1]); m > 0 {
		return n, nil, fmt.Errorf("%s: file grew while being archived", p)
	}
	if h != nil {
		return n, h.Sum(nil), nil
	}
	return n, nil, nil
}

// writeManifest appends format.ManifestFile with digests.
func writeManifest(tw *tar.Writer, digests map[string]string) error {
	b, err := json.MarshalIndent(format.Manifest{Version: format.ManifestVersion, SHA256: digests}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", format.ManifestFile, err)
	}
	hdr := &tar.Header{Name: format.ManifestFile, Typeflag: tar.TypeReg, Mode: 0o600 | tarModeReg, Size: int64(len(b)),
		ModTime: time.Now().Truncate(time.Second), Uname: "root", Gname: "root"}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", format.ManifestFile, err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("%s: %w", format.ManifestFile, err)
	}
	return nil
}

// copyExactly copies size bytes from src to dst, checking ctx between
// chunks. A src shorter than size gives io.ErrUnexpectedEOF.
func copyExactly(ctx context.Context, dst io.Writer, src io.Reader, size int64, buf []byte, pr *progress) (int64, error) {
	if pr != nil {
		dst = &progressWriter{w: dst, pr: pr}
	}
	return safefs.CopyN(ctx, dst, src, size, buf)
}

// progressWriter reports what passes through it.
type progressWriter struct {
	w  io.Writer
	pr *progress
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.pr.add(int64(n))
	return n, err
}

const (
	tarModeDir = 0o40000
	tarModeReg = 0o100000
)

// header builds a tar header the way Podman's archives have them (Go's
// tar.FileInfoHeader as used by containers/storage): owner root, mode with
// the file type bits, mtime in whole seconds. The format is left to
// archive/tar, which takes ustar unless the name or size does not fit.
func header(name string, fi fs.FileInfo) *tar.Header {
	mode := int64(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	h := &tar.Header{
		Name:    name,
		ModTime: fi.ModTime().Truncate(time.Second),
		Uname:   "root",
		Gname:   "root",
	}
	if fi.IsDir() {
		h.Typeflag = tar.TypeDir
		h.Mode = mode | tarModeDir
	} else {
		h.Typeflag = tar.TypeReg
		h.Mode = mode | tarModeReg
		h.Size = fi.Size()
	}
	return h
}
