package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestParseCompression(t *testing.T) {
	tests := []struct {
		in      string
		want    Compression
		wantErr string
	}{
		{in: "gzip", want: Gzip},
		{in: "zstd", want: Zstd},
		{in: "none", want: None},
		{in: "x", wantErr: `unknown compression "x": use gzip, zstd or none`},
		{in: "", wantErr: `unknown compression "": use gzip, zstd or none`},
		{in: "GZIP", wantErr: `unknown compression "GZIP"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCompression(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseCompression(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseCompression(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
	if s := Compression(7).String(); s != "Compression(7)" {
		t.Errorf("String() of an unknown value = %q", s)
	}
}

func TestCompressionFromName(t *testing.T) {
	tests := []struct {
		path string
		want Compression
		ok   bool
	}{
		{"ckpt.tar.gz", Gzip, true},
		{"/var/lib/x/ckpt.tgz", Gzip, true},
		{"CKPT.TAR.GZ", Gzip, true},
		{"ckpt.tar.zst", Zstd, true},
		{"ckpt.tzst", Zstd, true},
		{"ckpt.tar", None, true},
		{"ckpt", None, false},
		{"ckpt.gz", None, false},
		{"ckpt.zst", None, false},
		{"ckpt.tar.xz", None, false},
		{"-", None, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, ok := CompressionFromName(tt.path)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("CompressionFromName(%q) = %v, %v, want %v, %v", tt.path, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func compressed(t *testing.T, c Compression, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewCompressor(c, &buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDetect(t *testing.T) {
	plain := makeTar(t, false, fileEntry("a", "hello"))
	tests := []struct {
		name    string
		in      []byte
		want    Compression
		wantErr error
	}{
		{name: "gzip", in: compressed(t, Gzip, plain), want: Gzip},
		{name: "zstd", in: compressed(t, Zstd, plain), want: Zstd},
		{name: "tar", in: plain, want: None},
		{name: "podman gzip", in: referenceArchive(t, "bb2-httpd-gzip.tar.gz"), want: Gzip},
		{name: "podman zstd", in: referenceArchive(t, "nginx-zstd-default.tar.zst"), want: Zstd},
		{name: "garbage", in: bytes.Repeat([]byte("garbage!"), 100), wantErr: ErrNotArchive},
		{name: "empty", in: nil, wantErr: ErrNotArchive},
		{name: "short", in: []byte("ustar"), wantErr: ErrNotArchive},
		{name: "zip", in: append([]byte("PK\x03\x04"), make([]byte, 600)...), wantErr: ErrNotArchive},
		{name: "zero blocks", in: make([]byte, 1024), wantErr: ErrNotArchive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, r, err := Detect(bytes.NewReader(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Detect error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "not a checkpoint archive") {
					t.Errorf("error %q does not say what is wrong", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Detect = %v, %v, want %v", got, err, tt.want)
			}
			all, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(all, tt.in) {
				t.Fatalf("reader after Detect lost bytes: got %d of %d (%v)", len(all), len(tt.in), err)
			}
		})
	}
}

func TestCompressorRoundTrip(t *testing.T) {
	// Several pgzip blocks and zstd jobs, so that the parallel paths run.
	data := bytes.Repeat([]byte("checkpoint pages and some text 0123456789\n"), 200_000)
	tests := []struct {
		c     Compression
		level int
	}{
		{None, 0}, {Gzip, 0}, {Gzip, 1}, {Gzip, 9}, {Zstd, 0}, {Zstd, 1}, {Zstd, 19},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/level%d", tt.c, tt.level), func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewCompressor(tt.c, &buf, tt.level)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if tt.c != None && buf.Len() >= len(data)/10 {
				t.Errorf("%v compressed %d bytes to %d", tt.c, len(data), buf.Len())
			}
			r, err := NewDecompressor(tt.c, &buf)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("round trip: %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestNewCompressorBadLevel(t *testing.T) {
	tests := []struct {
		c     Compression
		level int
	}{
		{Gzip, -2}, {Gzip, 10}, {Zstd, -1}, {Zstd, 23}, {Compression(9), 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/level%d", tt.c, tt.level), func(t *testing.T) {
			if _, err := NewCompressor(tt.c, io.Discard, tt.level); err == nil {
				t.Fatalf("NewCompressor(%v, level %d) succeeded", tt.c, tt.level)
			}
		})
	}
}
