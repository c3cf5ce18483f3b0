package inspect

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	tcp_stream "github.com/checkpoint-restore/go-criu/v7/crit/images/tcp-stream"
	"github.com/checkpoint-restore/go-criu/v7/magic"
	"google.golang.org/protobuf/proto"
)

var magics = magic.LoadMagic()

// image builds a CRIU image: the common magic, the kind's magic, then each
// entry with its size.
func image(t testing.TB, kind string, entries ...[]byte) []byte {
	t.Helper()
	m, ok := magics.ByName[kind]
	if !ok {
		t.Fatalf("no magic %s", kind)
	}
	b := binary.LittleEndian.AppendUint32(nil, uint32(magics.ByName["IMG_COMMON"]))
	b = binary.LittleEndian.AppendUint32(b, uint32(m))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

func pstreeEntry(t testing.TB, pid, ppid uint32) []byte {
	t.Helper()
	b, err := proto.Marshal(&pstree.PstreeEntry{Pid: &pid, Ppid: &ppid, Pgid: &pid, Sid: &pid})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tcpStreamEntry(t testing.TB, inq, outq uint32) []byte {
	t.Helper()
	var zero uint32
	b, err := proto.Marshal(&tcp_stream.TcpStreamEntry{InqLen: &inq, InqSeq: &zero, OutqLen: &outq, OutqSeq: &zero,
		OptMask: &zero, SndWscale: &zero, MssClamp: &zero})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeImage(t *testing.T) {
	e1, e6 := pstreeEntry(t, 1, 0), pstreeEntry(t, 6, 1)
	good := image(t, "PSTREE", e1, e6)
	inventory := binary.LittleEndian.AppendUint32(nil, uint32(magics.ByName["INVENTORY"]))
	tests := []struct {
		name    string
		data    []byte
		kind    imageKind
		entries int
		wantErr string
	}{
		{name: "two entries", data: good, kind: pstreeImage, entries: 2},
		{name: "no entries", data: image(t, "PSTREE"), kind: pstreeImage},
		{name: "inventory has no common magic", data: append(inventory, 2, 0, 0, 0, 8, 2), kind: inventoryImage, entries: 1},
		{name: "empty", data: nil, kind: pstreeImage, wantErr: "0 bytes, too short for a magic number"},
		{name: "common magic only", data: good[:4], kind: pstreeImage, wantErr: "4 bytes, too short"},
		{name: "unknown magic", data: []byte("garbage!"), kind: pstreeImage, wantErr: "unknown magic 0x62726167 (want PSTREE)"},
		{name: "other kind", data: good, kind: coreImage, wantErr: "image of kind PSTREE, want CORE"},
		{name: "size cut", data: good[:len(good)-len(e6)-2], kind: pstreeImage, wantErr: "entry 1 at offset 20: 2 bytes left, too few for a size"},
		{name: "entry cut", data: good[:len(good)-1], kind: pstreeImage, wantErr: "entry 1 at offset 20: size 8 runs past the end (7 bytes left)"},
		{name: "magic only", data: image(t, "PSTREE", e1)[:8], kind: pstreeImage, entries: 0},
		{name: "4 GiB entry", data: append(image(t, "PSTREE"), 0xff, 0xff, 0xff, 0xff, 1), kind: pstreeImage, wantErr: "size 4294967295 runs past the end (1 bytes left)"},
		{name: "not protobuf", data: image(t, "PSTREE", []byte{0xff, 0xff}), kind: pstreeImage, wantErr: "corrupt CRIU image"},
		{name: "required field missing", data: image(t, "PSTREE", []byte{0x08, 0x01}), kind: pstreeImage, wantErr: "required field"},
		{name: "payload after the entry", data: append(image(t, "TCP_STREAM", tcpStreamEntry(t, 5, 6)), "queued data"...), kind: tcpStreamImage, entries: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := decodeImage("checkpoint/x.img", tt.data, tt.kind)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrCorruptImage) || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "checkpoint/x.img: ") {
					t.Fatalf("error %v, want one naming checkpoint/x.img and saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != tt.entries {
				t.Fatalf("%d entries, want %d", len(msgs), tt.entries)
			}
		})
	}
}

// TestDecodeImageRecovers checks that a panic inside the decoder becomes an
// error naming the member. crit does panic on hostile input elsewhere:
// GetDumpStats indexes an empty stats image, ExplorePs dereferences a
// missing parent; inspect uses neither, and guards Decode all the same.
func TestDecodeImageRecovers(t *testing.T) {
	kind := imageKind{Magic: "PSTREE", Entry: func() proto.Message { panic("boom") }}
	_, err := decodeImage("checkpoint/pstree.img", image(t, "PSTREE"), kind)
	if !errors.Is(err, ErrCorruptImage) || !strings.Contains(err.Error(), "checkpoint/pstree.img: corrupt CRIU image: decoder failed: boom") {
		t.Fatalf("error %v", err)
	}
}

func TestBaseID(t *testing.T) {
	tests := []struct {
		name, prefix string
		want         uint32
		ok           bool
	}{
		{"checkpoint/core-12.img", "core-", 12, true},
		{"checkpoint/mm-1.img", "mm-", 1, true},
		{"checkpoint/mm-.img", "mm-", 0, false},
		{"checkpoint/mm-x.img", "mm-", 0, false},
		{"checkpoint/mm-4294967296.img", "mm-", 0, false},
		{"checkpoint/pagemap-shmem-1.img", "pagemap-", 0, false},
	}
	for _, tt := range tests {
		got, ok := baseID(tt.name, tt.prefix)
		if got != tt.want || ok != tt.ok {
			t.Errorf("baseID(%q) = %d, %v, want %d, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
