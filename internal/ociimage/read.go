package ociimage

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"path"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crtool/crtool/internal/errdefs"
)

// Bounds on an image file, which is untrusted input: how many members its
// tar may have, and how many bytes of JSON it may make crtool hold.
const (
	maxMembers   = 4096
	maxJSONTotal = 16 << 20
)

// layerTypes are the media types a checkpoint layer may have; the layer is
// extracted as a checkpoint archive, whose reader detects the compression.
var layerTypes = map[string]bool{
	ocispec.MediaTypeImageLayer:                         true,
	ocispec.MediaTypeImageLayerGzip:                     true,
	ocispec.MediaTypeImageLayerZstd:                     true,
	"application/vnd.docker.image.rootfs.diff.tar.gzip": true,
}

// IsImage reports whether r, a file's content, is an OCI image archive
// rather than a checkpoint archive: an uncompressed tar whose first
// member belongs to an OCI image layout. Checkpoint archives never have
// such members.
func IsImage(r io.ReaderAt) bool {
	tr := tar.NewReader(io.NewSectionReader(r, 0, 64<<10))
	for range 4 {
		hdr, err := tr.Next()
		if err != nil {
			return false
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		switch {
		case name == "" || name == "." || name == "blobs/" || name == "blobs":
			continue
		case name == ocispec.ImageLayoutFile, name == ocispec.ImageIndexFile, strings.HasPrefix(name, "blobs/"):
			return true
		default:
			return false
		}
	}
	return false
}

// Layer is the checkpoint archive inside an image file: read it to its
// end, then Close checks its digest.
type Layer struct {
	r        io.Reader
	size     int64
	verifier digest.Verifier
	desc     ocispec.Descriptor
	Manifest ocispec.Manifest
}

func (l *Layer) Read(p []byte) (int, error) { return l.r.Read(p) }

// Size is the layer's length as the manifest records it.
func (l *Layer) Size() int64 { return l.size }

// Close reads what the extraction left of the layer (the tar's padding)
// and fails unless the layer is the one the manifest names: a restore must
// not go on with content the image does not vouch for.
func (l *Layer) Close() error {
	if _, err := io.Copy(io.Discard, l.r); err != nil {
		return invalid("read layer %s: %v", l.desc.Digest, err)
	}
	if !l.verifier.Verified() {
		return invalid("layer %s does not match its digest: the image file is corrupt", l.desc.Digest)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return errdefs.Newf(errdefs.ErrInvalidArchive, "image: "+format, args...)
}

// OpenLayer finds the checkpoint archive in an OCI image archive of size
// bytes: index.json names one manifest, the manifest one layer, and every
// blob read is checked against its digest and size.
func OpenLayer(r io.ReaderAt, size int64) (*Layer, error) {
	blobs, sizes, err := scan(r, size)
	if err != nil {
		return nil, err
	}
	idxBlob, ok := blobs[ocispec.ImageIndexFile]
	if !ok {
		return nil, invalid("%s is missing", ocispec.ImageIndexFile)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(idxBlob, &idx); err != nil {
		return nil, invalid("%s: %v", ocispec.ImageIndexFile, err)
	}
	if len(idx.Manifests) != 1 {
		return nil, invalid("%s lists %d manifests; a checkpoint image has one", ocispec.ImageIndexFile, len(idx.Manifests))
	}
	var man ocispec.Manifest
	if err := readBlob(blobs, idx.Manifests[0], ocispec.MediaTypeImageManifest, &man); err != nil {
		return nil, err
	}
	if len(man.Layers) != 1 {
		return nil, invalid("manifest %s has %d layers; a checkpoint image has one", idx.Manifests[0].Digest, len(man.Layers))
	}
	var cfg ocispec.Image
	if err := readBlob(blobs, man.Config, ocispec.MediaTypeImageConfig, &cfg); err != nil {
		return nil, err
	}
	ld := man.Layers[0]
	if !layerTypes[ld.MediaType] {
		return nil, invalid("layer media type %q is not a tar layer", ld.MediaType)
	}
	if err := ld.Digest.Validate(); err != nil {
		return nil, invalid("layer digest %q: %v", ld.Digest, err)
	}
	name := blobPath(ld.Digest)
	if got, ok := sizes[name]; !ok {
		return nil, invalid("layer %s is missing", ld.Digest)
	} else if got != ld.Size {
		return nil, invalid("layer %s is %d bytes, the manifest says %d", ld.Digest, got, ld.Size)
	}
	body, err := member(r, size, name)
	if err != nil {
		return nil, err
	}
	v := ld.Digest.Verifier()
	return &Layer{r: io.TeeReader(io.LimitReader(body, ld.Size), v), size: ld.Size, verifier: v, desc: ld, Manifest: man}, nil
}

// scan reads the image's member list once: JSON-sized files whole (index,
// layout, manifests, configs), the size of every member.
func scan(r io.ReaderAt, size int64) (blobs map[string][]byte, sizes map[string]int64, err error) {
	blobs, sizes = map[string][]byte{}, map[string]int64{}
	tr := tar.NewReader(io.NewSectionReader(r, 0, size))
	var held int64
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return blobs, sizes, nil
		}
		if err != nil {
			return nil, nil, invalid("read: %v", err)
		}
		if n >= maxMembers {
			return nil, nil, invalid("more than %d members", maxMembers)
		}
		if hdr.Typeflag == tar.TypeDir {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, nil, invalid("%s: member type %q is not a regular file", hdr.Name, hdr.Typeflag)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		sizes[name] = hdr.Size
		if hdr.Size > maxJSON || held+hdr.Size > maxJSONTotal {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, invalid("read %s: %v", name, err)
		}
		blobs[name], held = b, held+hdr.Size
	}
}

// readBlob decodes the blob d names after checking its media type,
// digest and size.
func readBlob(blobs map[string][]byte, d ocispec.Descriptor, mediaType string, v any) error {
	if d.MediaType != mediaType {
		return invalid("blob %s has media type %q, want %q", d.Digest, d.MediaType, mediaType)
	}
	if err := d.Digest.Validate(); err != nil {
		return invalid("digest %q: %v", d.Digest, err)
	}
	b, ok := blobs[blobPath(d.Digest)]
	if !ok {
		return invalid("blob %s is missing or larger than %d bytes", d.Digest, maxJSON)
	}
	if int64(len(b)) != d.Size || d.Digest.Algorithm().FromBytes(b) != d.Digest {
		return invalid("blob %s does not match its digest or size", d.Digest)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return invalid("blob %s: %v", d.Digest, err)
	}
	return nil
}

// member returns the content of the image's member name.
func member(r io.ReaderAt, size int64, name string) (io.Reader, error) {
	tr := tar.NewReader(io.NewSectionReader(r, 0, size))
	for {
		hdr, err := tr.Next()
		if err != nil {
			return nil, invalid("read %s: %v", name, err)
		}
		if path.Clean(strings.TrimPrefix(hdr.Name, "./")) == name {
			return tr, nil
		}
	}
}
