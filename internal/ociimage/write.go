package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
)

// maxJSON bounds the JSON files read into memory: crtool.json and
// config.dump of an archive, index.json, manifests and configs of an image.
const maxJSON = 4 << 20

// WriteOptions says how to name the image and where to stage its layer.
type WriteOptions struct {
	Tag     string // image name; "localhost/" and ":latest" are added when missing
	Runtime string // OCI runtime annotation; default: the archive's
	TempDir string // directory for the staged layer (default: $TMPDIR)
}

// Image is what Write wrote, for the caller's summary.
type Image struct {
	Name        string
	Manifest    ocispec.Descriptor
	Layer       ocispec.Descriptor
	Annotations map[string]string
}

// WriteFile writes the checkpoint archive in (any compression, "-" for
// stdin) as an OCI image archive to out ("-" for stdout). A file is written
// under a temporary name and renamed, so a failure leaves no partial image.
func WriteFile(ctx context.Context, out, in string, opts WriteOptions) (*Image, error) {
	if out == format.Stdio {
		return Write(ctx, os.Stdout, in, opts)
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return nil, fmt.Errorf("create image: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	img, err := Write(ctx, f, in, opts)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write %s: %w", out, cerr)
	}
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(f.Name(), out); err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	return img, nil
}

// Write writes the checkpoint archive in as an OCI image archive (the tar
// of an OCI image layout that `podman load` reads) to w: one uncompressed
// layer holding the archive's members at its root, as Podman's
// `container checkpoint --create-image` commits them.
func Write(ctx context.Context, w io.Writer, in string, opts WriteOptions) (*Image, error) {
	if opts.Tag == "" {
		return nil, errors.New("an image needs a name: pass --tag NAME[:TAG]")
	}
	layer, err := os.CreateTemp(opts.TempDir, "crtool-layer-*.tar")
	if err != nil {
		return nil, fmt.Errorf("stage image layer: %w", err)
	}
	defer func() {
		layer.Close()
		os.Remove(layer.Name())
	}()
	st, err := stageLayer(ctx, layer, in)
	if err != nil {
		return nil, err
	}
	if st.cfg == nil {
		return nil, fmt.Errorf("%s has no %s: it is not a checkpoint archive", in, format.ConfigDumpFile)
	}
	rt := opts.Runtime
	if rt == "" {
		rt = runtimeOf(st.md, st.cfg)
	}
	if rt == "" {
		return nil, fmt.Errorf("%s does not record its OCI runtime: pass --runtime NAME (runc, crun), the runtime of the engine that will restore it", in)
	}
	img := &Image{Name: normalizeRef(opts.Tag), Annotations: annotations(st.md, st.cfg, rt)}
	img.Layer = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: st.digest, Size: st.size}
	created := time.Now().UTC()
	if st.md != nil && !st.md.Checkpoint.IsZero() {
		created = st.md.Checkpoint.UTC()
	}
	cfgBlob, err := json.Marshal(imageConfig(img.Layer.Digest, created, st.md))
	if err != nil {
		return nil, fmt.Errorf("encode image config: %w", err)
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgBlob), Size: int64(len(cfgBlob))}
	man := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      cfgDesc,
		Layers:      []ocispec.Descriptor{img.Layer},
		Annotations: img.Annotations,
	}
	manBlob, err := json.Marshal(man)
	if err != nil {
		return nil, fmt.Errorf("encode image manifest: %w", err)
	}
	img.Manifest = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manBlob), Size: int64(len(manBlob)),
		// Podman names a loaded oci-archive image after these (libimage
		// nameFromAnnotations), containerd after the first.
		Annotations: map[string]string{"io.containerd.image.name": img.Name, ocispec.AnnotationRefName: img.Name},
	}
	idxBlob, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{img.Manifest},
	})
	if err != nil {
		return nil, fmt.Errorf("encode image index: %w", err)
	}
	layoutBlob, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return nil, fmt.Errorf("encode image layout: %w", err)
	}
	if _, err := layer.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("stage image layer: %w", err)
	}
	tw := tar.NewWriter(w)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: created, Format: tar.FormatPAX}); err != nil {
			return nil, fmt.Errorf("write image: %w", err)
		}
	}
	members := []struct {
		name string
		r    io.Reader
		size int64
	}{
		{ocispec.ImageLayoutFile, bytes.NewReader(layoutBlob), int64(len(layoutBlob))},
		{blobPath(st.digest), layer, st.size},
		{blobPath(cfgDesc.Digest), bytes.NewReader(cfgBlob), cfgDesc.Size},
		{blobPath(img.Manifest.Digest), bytes.NewReader(manBlob), img.Manifest.Size},
		{ocispec.ImageIndexFile, bytes.NewReader(idxBlob), int64(len(idxBlob))},
	}
	for _, m := range members {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("write image: %w", err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: m.size, ModTime: created, Format: tar.FormatPAX}); err != nil {
			return nil, fmt.Errorf("write image: %w", err)
		}
		if _, err := io.CopyN(tw, m.r, m.size); err != nil {
			return nil, fmt.Errorf("write image %s: %w", m.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write image: %w", err)
	}
	return img, nil
}

// imageConfig is the config of a checkpoint image: no command of its own
// (the checkpoint carries the process), the layer as its only diff.
func imageConfig(layer digest.Digest, created time.Time, md *format.Metadata) ocispec.Image {
	arch := "amd64"
	if md != nil && md.CPU != nil && md.CPU.Arch != "" {
		arch = md.CPU.Arch
	}
	return ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: arch, OS: "linux"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer}},
		History:  []ocispec.History{{Created: &created, CreatedBy: "crtool image"}},
	}
}

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// staged is the layer written from an archive, with the metadata its
// annotations come from.
type staged struct {
	digest digest.Digest
	size   int64
	md     *format.Metadata
	cfg    *format.ContainerConfig
}

// stageLayer copies the members of the archive in to dst as a plain tar,
// checked as restore checks them, and decodes crtool.json and config.dump
// on the way.
func stageLayer(ctx context.Context, dst io.Writer, in string) (*staged, error) {
	src, _, err := archive.Open(in)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	defer src.Close()
	dig := digest.Canonical.Digester()
	cw := &countWriter{w: io.MultiWriter(dst, dig.Hash())}
	tw := tar.NewWriter(cw)
	st := &staged{}
	err = archive.Walk(ctx, src, func(hdr *tar.Header, body io.Reader) error {
		out := &tar.Header{
			Name: hdr.Name, Typeflag: hdr.Typeflag, Mode: hdr.Mode, Uid: hdr.Uid, Gid: hdr.Gid,
			ModTime: hdr.ModTime, Size: hdr.Size, Format: tar.FormatPAX,
		}
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("stage %s: %w", hdr.Name, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		var v any
		switch hdr.Name {
		case format.MetadataFile:
			st.md = &format.Metadata{}
			v = st.md
		case format.ConfigDumpFile:
			st.cfg = &format.ContainerConfig{}
			v = st.cfg
		}
		if v == nil {
			if _, err := io.Copy(tw, body); err != nil {
				return fmt.Errorf("stage %s: %w", hdr.Name, err)
			}
			return nil
		}
		if hdr.Size > maxJSON {
			return fmt.Errorf("%s: %s is %d bytes, more than %d", in, hdr.Name, hdr.Size, maxJSON)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return fmt.Errorf("read %s: %w", hdr.Name, err)
		}
		if _, err := tw.Write(b); err != nil {
			return fmt.Errorf("stage %s: %w", hdr.Name, err)
		}
		return format.Decode(hdr.Name, b, v)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("stage image layer: %w", err)
	}
	st.digest, st.size = dig.Digest(), cw.n
	return st, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
