package inspect

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
)

// Bounds on what inspect reads into memory from a hostile archive. Real
// images are far smaller: the largest in the reference archives is 23 KB;
// a process with 100,000 mappings has an mm image of about 5 MiB.
// Decoded entries cost far more than their bytes (an empty entry is 4
// bytes, decoded a few hundred): maxDecodedEntries bounds them across all
// images, on top of criuimg.MaxEntries per image.
const (
	maxMemberSize     = 64 << 20
	maxLoadTotal      = 512 << 20
	maxDecodedEntries = 1 << 20
)

var checkpointPrefix = format.CheckpointDir + "/"

// member is a file of the checkpoint, by its archive name.
type member struct {
	size  int64
	mtime time.Time
	data  []byte // content, when inspect needed it
	path  string // file on disk, for directories
}

// contents is what inspect read of a checkpoint, whatever its form.
type contents struct {
	kind        string
	compression string
	members     map[string]*member
	loaded      int64
	stoppedAt   string
	// firstPages is the first pages image met in an archive.
	firstPages string
	// pages holds the pages of memory images that --cmdline and --env
	// need: member name -> offset -> one page.
	pages    map[string]map[int64][]byte
	pageSize int
	decoded  map[string][]proto.Message
	entries  int                 // decoded entries, in all images
	mems     map[uint32]*procMem // by pid; nil entries: no memory images
}

func newContents(kind string) *contents {
	return &contents{
		kind:     kind,
		members:  map[string]*member{},
		pages:    map[string]map[int64][]byte{},
		pageSize: os.Getpagesize(),
		decoded:  map[string][]proto.Message{},
	}
}

func (c *contents) has(name string) bool {
	_, ok := c.members[name]
	return ok
}

// data returns a member's content; ok is false when the member is absent.
func (c *contents) data(name string) (b []byte, ok bool) {
	m, ok := c.members[name]
	if !ok {
		return nil, false
	}
	return m.data, true
}

// image decodes the CRIU image member once; a missing member is ErrMissing.
func (c *contents) image(name string, kind imageKind) ([]proto.Message, error) {
	if msgs, ok := c.decoded[name]; ok {
		return msgs, nil
	}
	m, ok := c.members[name]
	if !ok {
		return nil, memberErr(name, ErrMissing)
	}
	if m.data == nil && m.size > 0 {
		return nil, memberErr(name, errors.New("not read: inspect did not expect to need it"))
	}
	msgs, err := decodeImage(name, m.data, kind)
	if err != nil {
		return nil, err
	}
	if c.entries += len(msgs); c.entries > maxDecodedEntries {
		return nil, memberErr(name, fmt.Errorf("%w: the images inspect needs hold more than %d entries together", ErrTooLarge, maxDecodedEntries))
	}
	c.decoded[name] = msgs
	return msgs, nil
}

// firstEntry decodes an image that must hold at least one entry.
func (c *contents) firstEntry(name string, kind imageKind) (proto.Message, error) {
	msgs, err := c.image(name, kind)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, corruptImage(name, "no entry")
	}
	return msgs[0], nil
}

// names lists the members under checkpoint/ whose base name starts with
// prefix and ends with suffix, sorted.
func (c *contents) names(prefix, suffix string) []string {
	var out []string
	for n := range c.members {
		base, ok := strings.CutPrefix(n, checkpointPrefix)
		if ok && !strings.Contains(base, "/") && strings.HasPrefix(base, prefix) && strings.HasSuffix(base, suffix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// load reads a member's content, within the size bounds.
func (c *contents) load(name string, m *member, r io.Reader) error {
	if m.size > maxMemberSize {
		return memberErr(name, fmt.Errorf("%w: %d bytes, inspect reads at most %d", ErrTooLarge, m.size, maxMemberSize))
	}
	if c.loaded+m.size > maxLoadTotal {
		return memberErr(name, fmt.Errorf("%w: the images inspect needs exceed %d bytes together", ErrTooLarge, maxLoadTotal))
	}
	b, err := io.ReadAll(io.LimitReader(r, maxMemberSize+1))
	if err != nil {
		return memberErr(name, err)
	}
	if int64(len(b)) > maxMemberSize {
		return memberErr(name, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxMemberSize))
	}
	c.loaded += int64(len(b))
	m.data = b
	return nil
}

// isPages reports whether name is a memory pages image of checkpoint/.
func isPages(name string) bool {
	base, ok := strings.CutPrefix(name, checkpointPrefix)
	return ok && !strings.Contains(base, "/") && strings.HasPrefix(base, "pages-") && strings.HasSuffix(base, ".img")
}

// wanted reports whether inspect needs the content of member name for opts.
func wanted(name string, opts Options) bool {
	switch name {
	case format.ConfigDumpFile, format.SpecDumpFile, format.NetworkStatusFile, format.StatsDumpFile,
		format.MetadataFile, format.BindMountsFile, format.DeletedFilesFile:
		return true
	}
	base, ok := strings.CutPrefix(name, checkpointPrefix)
	if !ok || strings.Contains(base, "/") {
		return false
	}
	files := opts.Files || opts.Sockets
	pages := opts.Memory || opts.Cmdline || opts.Env
	has := func(prefix string) bool { return strings.HasPrefix(base, prefix) && strings.HasSuffix(base, ".img") }
	switch {
	case base == "inventory.img", base == format.DescriptorsFile:
		return true
	case base == "pstree.img", has("core-"):
		return opts.PsTree
	case base == "files.img", base == "memfd.img":
		return files || opts.Memory // mappings name their files
	case has("ids-"), has("fdinfo-"), has("fs-"), has("tcp-stream-"):
		return files
	case has("mm-"), has("pagemap-"):
		return pages
	case has("mountpoints-"):
		return opts.Mounts
	case has("netns-"):
		return opts.Network
	}
	return false
}

// countingReader counts the bytes read from an archive.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readArchive reads the members inspect needs from the archive r, with one
// pass over it. Archives that crtool wrote put every image but the memory
// pages first; there inspect stops at the first pages image unless it needs
// their sizes or content.
func readArchive(ctx context.Context, r io.Reader, opts Options) (*contents, int64, error) {
	cr := &countingReader{r: r}
	comp, br, err := archive.Detect(cr)
	if err != nil {
		return nil, 0, err
	}
	c := newContents(SourceArchive)
	c.compression = comp.String()
	var plan *pagePlan
	err = archive.Walk(ctx, br, func(hdr *tar.Header, body io.Reader) error {
		if hdr.Typeflag == tar.TypeDir {
			return nil
		}
		name := hdr.Name
		m := &member{size: hdr.Size, mtime: hdr.ModTime}
		c.members[name] = m
		if isPages(name) {
			if c.firstPages == "" {
				c.firstPages = name
				if canStopAtPages(c, opts) {
					delete(c.members, name)
					c.stoppedAt = name
					return archive.ErrStop
				}
			}
			if !opts.Cmdline && !opts.Env {
				return nil
			}
			if plan == nil {
				if plan, err = planPages(c); err != nil {
					return err
				}
			}
			return plan.capture(c, name, hdr.Size, body)
		}
		if wanted(name, opts) {
			return c.load(name, m, body)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return c, cr.n, nil
}

// canStopAtPages tells whether the rest of the archive can be skipped at
// its first pages image: only in archives crtool wrote (crtool.json), and
// only when pstree.img came before the pages, which shows that the writer
// put the small images first (sorted by name, pstree.img follows pages-*).
func canStopAtPages(c *contents, opts Options) bool {
	return !opts.Sizes && !opts.Cmdline && !opts.Env &&
		c.has(format.MetadataFile) && c.has(checkpointPrefix+"pstree.img")
}

// readDir reads the members inspect needs from an unpacked archive or a
// bare CRIU image directory.
func readDir(dir string, opts Options) (*contents, error) {
	var c *contents
	switch {
	case isDir(filepath.Join(dir, format.CheckpointDir)):
		c = newContents(SourceDirectory)
		if err := addDirFiles(c, dir, ""); err != nil {
			return nil, err
		}
		if err := addDirFiles(c, filepath.Join(dir, format.CheckpointDir), checkpointPrefix); err != nil {
			return nil, err
		}
	case isRegular(filepath.Join(dir, "inventory.img")):
		c = newContents(SourceImages)
		if err := addDirFiles(c, dir, checkpointPrefix); err != nil {
			return nil, err
		}
		// CRIU writes its statistics into the image directory.
		if m, ok := c.members[checkpointPrefix+format.StatsDumpFile]; ok {
			c.members[format.StatsDumpFile] = m
			delete(c.members, checkpointPrefix+format.StatsDumpFile)
		}
	default:
		return nil, fmt.Errorf("%s: %w: neither an unpacked archive (no %s/) nor a CRIU image directory (no inventory.img)",
			dir, ErrNotCheckpoint, format.CheckpointDir)
	}
	for name, m := range c.members {
		if !wanted(name, opts) {
			continue
		}
		f, err := os.Open(m.path)
		if err != nil {
			return nil, memberErr(name, err)
		}
		err = c.load(name, m, f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if opts.Cmdline || opts.Env {
		plan, err := planPages(c)
		if err != nil {
			return nil, err
		}
		for _, name := range plan.members() {
			m, ok := c.members[name]
			if !ok {
				continue
			}
			f, err := os.Open(m.path)
			if err != nil {
				return nil, memberErr(name, err)
			}
			err = plan.capture(c, name, m.size, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// addDirFiles records the regular files of dir (not its subdirectories)
// under prefix. Symbolic links and special files are ignored: reading a
// fifo would block, and a link may lead anywhere.
func addDirFiles(c *contents, dir, prefix string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		c.members[prefix+e.Name()] = &member{size: fi.Size(), mtime: fi.ModTime(), path: filepath.Join(dir, e.Name())}
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func isRegular(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}

// baseID returns the number in a member name like checkpoint/core-12.img.
func baseID(name, prefix string) (uint32, bool) {
	num, ok := strings.CutPrefix(strings.TrimSuffix(path.Base(name), ".img"), prefix)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(v), true
}
