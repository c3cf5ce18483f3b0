package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
)

// checkpointArchive writes a small plain-tar checkpoint archive as crtool
// lays it out and returns its path and members.
func checkpointArchive(t *testing.T) (string, map[string]string) {
	t.Helper()
	md, _ := json.Marshal(format.Metadata{
		Version: 1, CreatedBy: "crtool test", Kernel: "6.18.0", CRIUVersion: "4.2.1",
		CPU:       &format.CPUFeatures{Arch: "amd64"},
		Container: format.ContainerInfo{Name: "web", Runtime: "crun"},
		Cgroups:   format.CgroupInfo{Layout: "hybrid"},
	})
	cfg, _ := json.Marshal(format.ContainerConfig{Name: "web", RawImageName: "busybox", RootfsImageName: "docker.io/library/busybox:latest", RootfsImageID: "abc123", Runtime: "runc"})
	files := map[string]string{
		format.MetadataFile:   string(md),
		format.ConfigDumpFile: string(cfg),
		format.SpecDumpFile:   `{"ociVersion":"1.0.0"}`,
		format.CheckpointDir + "/" + format.InventoryImage: "inventory",
		format.CheckpointDir + "/pages-1.img":              strings.Repeat("p", 10000),
	}
	p := filepath.Join(t.TempDir(), "ckpt.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: format.CheckpointDir + "/", Typeflag: tar.TypeDir, Mode: 0o700}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{format.MetadataFile, format.ConfigDumpFile, format.SpecDumpFile, format.CheckpointDir + "/" + format.InventoryImage, format.CheckpointDir + "/pages-1.img"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(files[name]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p, files
}

// members reads an uncompressed tar into a map of name to content.
func members(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return m
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		m[hdr.Name] = body
	}
}

// decodeStrict decodes b into v, refusing fields the image-spec type does
// not have: what validates here is what the specification defines.
func decodeStrict(t *testing.T, what string, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s does not decode as its image-spec type: %v\n%s", what, err, b)
	}
}

func checkBlob(t *testing.T, files map[string][]byte, d ocispec.Descriptor) []byte {
	t.Helper()
	if err := d.Digest.Validate(); err != nil {
		t.Fatalf("descriptor %+v: %v", d, err)
	}
	b, ok := files["blobs/sha256/"+d.Digest.Encoded()]
	if !ok {
		t.Fatalf("blob %s missing", d.Digest)
	}
	if int64(len(b)) != d.Size || digest.FromBytes(b) != d.Digest {
		t.Fatalf("blob %s: size %d (descriptor %d) or digest does not match", d.Digest, len(b), d.Size)
	}
	return b
}

func writeImage(t *testing.T, opts WriteOptions) (string, []byte, map[string]string) {
	t.Helper()
	in, files := checkpointArchive(t)
	out := filepath.Join(t.TempDir(), "image.tar")
	if _, err := WriteFile(context.Background(), out, in, opts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return out, b, files
}

// TestWriteValidates: the image archive's layout, index, manifest and
// config decode as their image-spec types with their media types, every
// descriptor matches its blob, and the manifest carries the annotations
// Podman and CRI-O read.
func TestWriteValidates(t *testing.T) {
	_, b, files := writeImage(t, WriteOptions{Tag: "web-checkpoint", TempDir: t.TempDir()})
	got := members(t, b)

	var layout ocispec.ImageLayout
	decodeStrict(t, "oci-layout", got[ocispec.ImageLayoutFile], &layout)
	if layout.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout version %q", layout.Version)
	}
	var idx ocispec.Index
	decodeStrict(t, "index.json", got[ocispec.ImageIndexFile], &idx)
	if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex || len(idx.Manifests) != 1 {
		t.Fatalf("index %+v", idx)
	}
	if ref := idx.Manifests[0].Annotations[ocispec.AnnotationRefName]; ref != "localhost/web-checkpoint:latest" {
		t.Errorf("ref name %q", ref)
	}
	var man ocispec.Manifest
	decodeStrict(t, "manifest", checkBlob(t, got, idx.Manifests[0]), &man)
	if man.SchemaVersion != 2 || man.MediaType != ocispec.MediaTypeImageManifest || idx.Manifests[0].MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest media types: %+v", man)
	}
	if man.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("config media type %q", man.Config.MediaType)
	}
	var cfg ocispec.Image
	decodeStrict(t, "config", checkBlob(t, got, man.Config), &cfg)
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || cfg.RootFS.Type != "layers" {
		t.Errorf("config %+v", cfg)
	}
	if len(man.Layers) != 1 || man.Layers[0].MediaType != ocispec.MediaTypeImageLayer {
		t.Fatalf("layers %+v", man.Layers)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != man.Layers[0].Digest {
		t.Errorf("diff IDs %v, layer %s: an uncompressed layer's diff ID is its digest", cfg.RootFS.DiffIDs, man.Layers[0].Digest)
	}
	layer := members(t, checkBlob(t, got, man.Layers[0]))
	for name, content := range files {
		if string(layer[name]) != content {
			t.Errorf("layer member %s = %q, want %q", name, layer[name], content)
		}
	}

	want := map[string]string{
		"io.podman.annotations.checkpoint.name":            "web",
		"io.podman.annotations.checkpoint.rawImageName":    "busybox",
		"io.podman.annotations.checkpoint.rootfsImageID":   "abc123",
		"io.podman.annotations.checkpoint.rootfsImageName": "docker.io/library/busybox:latest",
		"io.podman.annotations.checkpoint.runtime.name":    "runc",  // config.dump's wins over crtool.json's
		"io.podman.annotations.checkpoint.criu.version":    "40201", // as Podman writes it
		"io.podman.annotations.checkpoint.host.arch":       "amd64",
		"io.podman.annotations.checkpoint.host.kernel":     "6.18.0",
		"io.podman.annotations.checkpoint.cgroups.version": "v1",
		"io.kubernetes.cri-o.annotations.checkpoint.name":  "web",
		"org.criu.checkpoint.container.name":               "web",
		"org.criu.checkpoint.runtime.name":                 "runc",
	}
	for k, v := range want {
		if man.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, man.Annotations[k], v)
		}
	}
}

func TestWriteRuntimeOverride(t *testing.T) {
	_, b, _ := writeImage(t, WriteOptions{Tag: "quay.io/x/web:v1", Runtime: "crun", TempDir: t.TempDir()})
	got := members(t, b)
	var idx ocispec.Index
	decodeStrict(t, "index.json", got[ocispec.ImageIndexFile], &idx)
	if ref := idx.Manifests[0].Annotations[ocispec.AnnotationRefName]; ref != "quay.io/x/web:v1" {
		t.Errorf("ref name %q", ref)
	}
	var man ocispec.Manifest
	decodeStrict(t, "manifest", checkBlob(t, got, idx.Manifests[0]), &man)
	if man.Annotations[AnnotationRuntimeName] != "crun" {
		t.Errorf("runtime annotation %q", man.Annotations[AnnotationRuntimeName])
	}
}

func TestCRIUVersion(t *testing.T) {
	for in, want := range map[string]string{"4.2.1": "40201", "3.19": "31900", "4.2": "40200", "": "", "dev": "dev"} {
		if got := criuVersion(in); got != want {
			t.Errorf("criuVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"web":                    "localhost/web:latest",
		"web:v1":                 "localhost/web:v1",
		"team/web":               "localhost/team/web:latest",
		"localhost/web":          "localhost/web:latest",
		"quay.io/team/web":       "quay.io/team/web:latest",
		"registry:5000/web:2":    "registry:5000/web:2",
		"quay.io/web@sha256:abc": "quay.io/web@sha256:abc",
	} {
		if got := normalizeRef(in); got != want {
			t.Errorf("normalizeRef(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpenLayer reads the checkpoint back: the layer is the archive, and
// Close vouches for it.
func TestOpenLayer(t *testing.T) {
	out, _, files := writeImage(t, WriteOptions{Tag: "web", TempDir: t.TempDir()})
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if !IsImage(f) {
		t.Fatal("IsImage = false for an image archive")
	}
	l, err := OpenLayer(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(l)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	layer := members(t, b)
	for name, content := range files {
		if string(layer[name]) != content {
			t.Errorf("member %s = %q", name, layer[name])
		}
	}
	in, _ := checkpointArchive(t)
	a, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if IsImage(a) {
		t.Error("IsImage = true for a checkpoint archive")
	}
}

// rewrite copies the image archive src, letting edit change each member.
func rewrite(t *testing.T, src []byte, edit func(name string, body []byte) (string, []byte)) string {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(src))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		name := hdr.Name
		if hdr.Typeflag == tar.TypeReg {
			name, body = edit(hdr.Name, body)
			if name == "" {
				continue
			}
		}
		hdr.Name, hdr.Size = name, int64(len(body))
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bad.tar")
	if err := os.WriteFile(p, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOpenLayerHostile: an image file is untrusted; every way it can lie
// about its layer is an invalid-archive error, at the latest from Close.
func TestOpenLayerHostile(t *testing.T) {
	_, good, _ := writeImage(t, WriteOptions{Tag: "web", TempDir: t.TempDir()})
	got := members(t, good)
	var idx ocispec.Index
	if err := json.Unmarshal(got[ocispec.ImageIndexFile], &idx); err != nil {
		t.Fatal(err)
	}
	manName := "blobs/sha256/" + idx.Manifests[0].Digest.Encoded()
	var man ocispec.Manifest
	if err := json.Unmarshal(got[manName], &man); err != nil {
		t.Fatal(err)
	}
	layerName := "blobs/sha256/" + man.Layers[0].Digest.Encoded()
	for _, tc := range []struct {
		name, want string
		edit       func(name string, body []byte) (string, []byte)
	}{
		{"flipped layer byte", "does not match its digest", func(n string, b []byte) (string, []byte) {
			if n == layerName {
				b = bytes.Clone(b)
				i := bytes.Index(b, []byte("ppp"))
				b[i] = 'q'
			}
			return n, b
		}},
		{"layer missing", "missing", func(n string, b []byte) (string, []byte) {
			if n == layerName {
				return "", nil
			}
			return n, b
		}},
		{"layer truncated", "bytes, the manifest says", func(n string, b []byte) (string, []byte) {
			if n == layerName {
				return n, b[:len(b)-1024]
			}
			return n, b
		}},
		{"manifest edited", "does not match its digest", func(n string, b []byte) (string, []byte) {
			if n == manName {
				return n, bytes.Replace(b, []byte(`"web"`), []byte(`"xyz"`), 1)
			}
			return n, b
		}},
		{"no index", "index.json is missing", func(n string, b []byte) (string, []byte) {
			if n == ocispec.ImageIndexFile {
				return "", nil
			}
			return n, b
		}},
		{"two manifests", "lists 2 manifests", func(n string, b []byte) (string, []byte) {
			if n == ocispec.ImageIndexFile {
				var i ocispec.Index
				_ = json.Unmarshal(b, &i)
				i.Manifests = append(i.Manifests, i.Manifests[0])
				b, _ = json.Marshal(i)
			}
			return n, b
		}},
		{"index not JSON", "index.json", func(n string, b []byte) (string, []byte) {
			if n == ocispec.ImageIndexFile {
				return n, []byte("{")
			}
			return n, b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := rewrite(t, good, tc.edit)
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			l, err := OpenLayer(f, st.Size())
			if err == nil {
				_, _ = io.Copy(io.Discard, l)
				err = l.Close()
			}
			if !errors.Is(err, errdefs.ErrInvalidArchive) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want an invalid-archive error containing %q", err, tc.want)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	in, _ := checkpointArchive(t)
	if _, err := Write(context.Background(), io.Discard, in, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "--tag") {
		t.Errorf("no tag: %v", err)
	}
	notArchive := filepath.Join(t.TempDir(), "x.tar")
	if err := os.WriteFile(notArchive, []byte("not a tar at all, just text that is long enough"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.tar")
	if _, err := WriteFile(context.Background(), out, notArchive, WriteOptions{Tag: "x", TempDir: t.TempDir()}); err == nil {
		t.Error("an input that is no archive was accepted")
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed write left %s", out)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Errorf("a failed write left %v", ents)
	}
}
