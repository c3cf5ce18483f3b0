package inspect

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/checkpoint-restore/go-criu/v7/crit"
	criu_core "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/memfd"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/mnt"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/netdev"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	tcp_stream "github.com/checkpoint-restore/go-criu/v7/crit/images/tcp-stream"
	"github.com/checkpoint-restore/go-criu/v7/magic"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// imageKind is a kind of CRIU image that inspect decodes.
type imageKind struct {
	magic string // crit's name for the image's magic number
	entry func() proto.Message
	// payload is set for images whose single entry is followed by raw
	// data rather than more entries (tcp-stream-*.img's queues).
	payload bool
}

var (
	inventoryImage = imageKind{magic: "INVENTORY", entry: func() proto.Message { return &inventory.InventoryEntry{} }}
	pstreeImage    = imageKind{magic: "PSTREE", entry: func() proto.Message { return &pstree.PstreeEntry{} }}
	coreImage      = imageKind{magic: "CORE", entry: func() proto.Message { return &criu_core.CoreEntry{} }}
	idsImage       = imageKind{magic: "IDS", entry: func() proto.Message { return &criu_core.TaskKobjIdsEntry{} }}
	fdinfoImage    = imageKind{magic: "FDINFO", entry: func() proto.Message { return &fdinfo.FdinfoEntry{} }}
	filesImage     = imageKind{magic: "FILES", entry: func() proto.Message { return &fdinfo.FileEntry{} }}
	fsImage        = imageKind{magic: "FS", entry: func() proto.Message { return &fs.FsEntry{} }}
	mmImage        = imageKind{magic: "MM", entry: func() proto.Message { return &mm.MmEntry{} }}
	// pagemapImage's first entry is a PagemapHead, the others
	// PagemapEntry; crit knows and ignores the type given.
	pagemapImage   = imageKind{magic: "PAGEMAP", entry: func() proto.Message { return &pagemap.PagemapEntry{} }}
	mountsImage    = imageKind{magic: "MNTS", entry: func() proto.Message { return &mnt.MntEntry{} }}
	statsImage     = imageKind{magic: "STATS", entry: func() proto.Message { return &stats.StatsEntry{} }}
	memfdImage     = imageKind{magic: "MEMFD_INODE", entry: func() proto.Message { return &memfd.MemfdInodeEntry{} }}
	netnsImage     = imageKind{magic: "NETNS", entry: func() proto.Message { return &netdev.NetnsEntry{} }}
	tcpStreamImage = imageKind{magic: "TCP_STREAM", entry: func() proto.Message { return &tcp_stream.TcpStreamEntry{} }, payload: true}
)

const (
	magicSize = 4
	sizeSize  = 4
)

var magics = magic.LoadMagic()

// decodeImage decodes data, the content of the CRIU image member, with
// go-criu's crit. crit trusts the image: it allocates whatever an entry's
// size word says (up to 4 GiB) and reads without checking for short reads,
// so checkFraming vets the layout first, and a panic inside crit becomes an
// error naming the member.
func decodeImage(member string, data []byte, kind imageKind) (_ []proto.Message, err error) {
	if err := checkFraming(data, kind); err != nil {
		return nil, corruptImage(member, "%v", err)
	}
	f, err := memFile(data)
	if err != nil {
		return nil, memberErr(member, err)
	}
	defer f.Close()
	defer func() {
		if r := recover(); r != nil {
			err = corruptImage(member, "decoder failed: %v", r)
		}
	}()
	img, err := crit.New(f, nil, "", false, true).Decode(kind.entry())
	if err != nil {
		return nil, corruptImage(member, "%v", err)
	}
	if img.Magic != kind.magic {
		return nil, corruptImage(member, "magic %s, want %s", img.Magic, kind.magic)
	}
	msgs := make([]proto.Message, 0, len(img.Entries))
	for _, e := range img.Entries {
		msgs = append(msgs, e.Message)
	}
	return msgs, nil
}

// checkFraming checks that data is an image of kind: its magic numbers,
// then entries each made of a 32-bit little-endian size and that many bytes,
// up to exactly the end.
func checkFraming(data []byte, kind imageKind) error {
	off := 0
	word := func() (uint32, bool) {
		if len(data)-off < 4 {
			return 0, false
		}
		v := binary.LittleEndian.Uint32(data[off:])
		off += 4
		return v, true
	}
	m, ok := word()
	if !ok {
		return fmt.Errorf("%d bytes, too short for a magic number", len(data))
	}
	if uint64(m) == magics.ByName["IMG_COMMON"] || uint64(m) == magics.ByName["IMG_SERVICE"] {
		if m, ok = word(); !ok {
			return fmt.Errorf("%d bytes, too short for a magic number", len(data))
		}
	}
	name, known := magics.ByValue[uint64(m)]
	switch {
	case !known:
		return fmt.Errorf("unknown magic 0x%08x (want %s)", m, kind.magic)
	case name != kind.magic:
		return fmt.Errorf("image of kind %s, want %s", name, kind.magic)
	}
	for n := 0; off < len(data); n++ {
		start := off
		size, ok := word()
		if !ok {
			return fmt.Errorf("entry %d at offset %d: %d bytes left, too few for a size", n, start, len(data)-start)
		}
		if uint64(size) > uint64(len(data)-off) {
			return fmt.Errorf("entry %d at offset %d: size %d runs past the end (%d bytes left)", n, start, size, len(data)-off)
		}
		off += int(size)
		if kind.payload {
			return nil
		}
	}
	return nil
}

// memFile puts data into an unnamed file for crit, which reads only
// *os.File: a memfd, or else a deleted temporary file.
func memFile(data []byte) (*os.File, error) {
	var f *os.File
	if fd, err := unix.MemfdCreate("crtool-inspect", unix.MFD_CLOEXEC); err == nil {
		f = os.NewFile(uintptr(fd), "memfd:crtool-inspect")
	} else {
		tmp, err := os.CreateTemp("", "crtool-inspect-*")
		if err != nil {
			return nil, fmt.Errorf("buffer image for decoding: %w", err)
		}
		os.Remove(tmp.Name())
		f = tmp
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("buffer image for decoding: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("buffer image for decoding: %w", err)
	}
	return f, nil
}
