package archive

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/safefs"
)

// ErrManifest means a member does not match the archive's manifest, or
// the manifest is unusable.
var ErrManifest = errdefs.New(errdefs.ErrInvalidArchive, "archive fails its manifest check")

// ErrNoManifest means the archive carries no format.ManifestFile.
var ErrNoManifest = errdefs.New(errdefs.ErrInvalidArchive, "no manifest to verify against")

// maxManifestSize bounds format.ManifestFile: about 100 bytes per member.
const maxManifestSize = 128 << 20

// digests collects the SHA-256 of the regular members as they are read.
type digests struct {
	sums map[string]string
	h    hash.Hash
	seen bool // the manifest was among the members
}

func newDigests() *digests { return &digests{sums: map[string]string{}, h: sha256.New()} }

// writer returns w, hashing what goes through it into the member name's
// digest; the manifest itself is not hashed.
func (d *digests) writer(name string, w io.Writer) io.Writer {
	d.h.Reset()
	if name == format.ManifestFile {
		d.seen = true
		return w
	}
	return io.MultiWriter(w, d.h)
}

// done records the digest of member name, whose content went through
// writer.
func (d *digests) done(name string) {
	if name != format.ManifestFile {
		d.sums[name] = hex.EncodeToString(d.h.Sum(nil))
	}
}

// check compares the digests with the manifest, which read returns, when
// the archive had one; ok says it had and all matched.
func (d *digests) check(read func() ([]byte, error)) (ok bool, err error) {
	if !d.seen {
		return false, nil
	}
	b, err := read()
	if err != nil {
		return false, fmt.Errorf("%w: %s: %w", ErrManifest, format.ManifestFile, err)
	}
	m, err := format.ParseManifest(b)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrManifest, err)
	}
	if err := m.Check(d.sums); err != nil {
		return false, fmt.Errorf("%w: %w", ErrManifest, err)
	}
	return true, nil
}

// readManifest reads the extracted manifest below root.
func readManifest(root int) ([]byte, error) {
	fd, err := safefs.OpenAt(root, format.ManifestFile, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), format.ManifestFile)
	defer f.Close()
	return readAtMost(f, maxManifestSize)
}

// VerifyStats describes an archive Verify checked.
type VerifyStats struct {
	Members int   // regular members checked
	Bytes   int64 // their content
}

// Verify reads the whole archive from r and checks every regular member
// against its manifest; an archive without one is ErrNoManifest.
func Verify(ctx context.Context, r io.Reader) (VerifyStats, error) {
	var st VerifyStats
	d := newDigests()
	var manifest []byte
	err := Walk(ctx, r, func(hdr *tar.Header, body io.Reader) error {
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		if hdr.Name == format.ManifestFile {
			d.seen = true
			var err error
			manifest, err = readAtMost(body, maxManifestSize)
			return err
		}
		n, err := safefs.Copy(ctx, d.writer(hdr.Name, io.Discard), body, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		d.done(hdr.Name)
		st.Members++
		st.Bytes += n
		return nil
	})
	if err != nil {
		return st, err
	}
	if !d.seen {
		return st, fmt.Errorf("%w: the archive has no %s (it was not written by crtool)", ErrNoManifest, format.ManifestFile)
	}
	_, err = d.check(func() ([]byte, error) { return manifest, nil })
	return st, err
}

func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errors.New("larger than crtool accepts")
	}
	return b, nil
}
