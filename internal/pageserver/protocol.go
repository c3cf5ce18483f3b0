package pageserver

import (
	"encoding/binary"
	"fmt"
)

// The wire format of criu/page-xfer.c: every command is a struct
// page_server_iov { u32 cmd; u64 nr_pages; u64 vaddr; u64 dst_id; } in the
// host's byte order, 4 bytes of padding after cmd.
const headerSize = 32

// Commands (page-xfer.c's PS_IOV_*). The high 16 bits of cmd carry the
// pagemap flags of PS_IOV_ADD_F.
const (
	cmdAdd        = 1
	cmdHole       = 2
	cmdOpen       = 3
	cmdOpen2      = 4
	cmdParent     = 5
	cmdAddF       = 6
	cmdGet        = 7
	cmdClose      = 0x1023
	cmdForceClose = 0x1024

	cmdBits = 16
	cmdMask = 1<<cmdBits - 1
)

// Pagemap entry flags (CRIU's PE_*).
const (
	FlagParent  = 1 << 0 // the pages are in the parent (pre-dump) images
	FlagLazy    = 1 << 1 // the pages may be restored lazily
	FlagPresent = 1 << 2 // the pages follow in the pages image
)

// PageSize is the size of the pages CRIU counts in (x86-64, arm64 with 4K).
const PageSize = 4096

// dst_id is id<<8 | type.
const (
	typeBits  = 8
	typeMask  = 1<<typeBits - 1
	typePID   = 1
	typeShmem = 2
)

// header is one page_server_iov.
type header struct {
	cmd     uint32
	nrPages uint64
	vaddr   uint64
	dstID   uint64
}

func (h *header) decode(b []byte) {
	h.cmd = binary.NativeEndian.Uint32(b[0:])
	h.nrPages = binary.NativeEndian.Uint64(b[8:])
	h.vaddr = binary.NativeEndian.Uint64(b[16:])
	h.dstID = binary.NativeEndian.Uint64(b[24:])
}

func (h *header) encode(b []byte) {
	clear(b[:headerSize])
	binary.NativeEndian.PutUint32(b[0:], h.cmd)
	binary.NativeEndian.PutUint64(b[8:], h.nrPages)
	binary.NativeEndian.PutUint64(b[16:], h.vaddr)
	binary.NativeEndian.PutUint64(b[24:], h.dstID)
}

// Image names the pagemap a command refers to: a process's (by PID) or a
// shared memory segment's (by its ID).
type Image struct {
	Shmem bool
	ID    uint64
}

// decodeImage understands the type numbers of every CRIU version, as
// page-xfer.c's decode_pm does.
func decodeImage(dstID uint64) (Image, error) {
	id := dstID >> typeBits
	switch dstID & typeMask {
	case typePID, 10, 11, 16, 17:
		return Image{ID: id}, nil
	case typeShmem, 27, 28, 29, 32, 33, 34:
		return Image{Shmem: true, ID: id}, nil
	}
	return Image{}, fmt.Errorf("unknown pagemap type %d", dstID&typeMask)
}

func (i Image) dstID() uint64 {
	t := uint64(typePID)
	if i.Shmem {
		t = typeShmem
	}
	return i.ID<<typeBits | t
}

// PagemapName is the image file CRIU reads this pagemap from.
func (i Image) PagemapName() string {
	if i.Shmem {
		return fmt.Sprintf("pagemap-shmem-%d.img", i.ID)
	}
	return fmt.Sprintf("pagemap-%d.img", i.ID)
}

func (i Image) String() string {
	if i.Shmem {
		return fmt.Sprintf("shared memory %d", i.ID)
	}
	return fmt.Sprintf("pid %d", i.ID)
}

// Entry is one pagemap entry: NrPages pages from Vaddr.
type Entry struct {
	Vaddr   uint64
	NrPages uint64
	Flags   uint32
}

// Present reports whether the entry's pages are sent with it.
func (e Entry) Present() bool { return e.Flags&FlagPresent != 0 }

// Bytes is the size of the entry's pages.
func (e Entry) Bytes() int64 { return int64(e.NrPages) * PageSize }

// HeaderSize is the size of one command on the wire.
const HeaderSize = headerSize

// IsClose reports whether b, one command, is the final close a client
// sends when it needs nothing more (the lazy-pages daemon, once every page
// arrived).
func IsClose(b []byte) bool {
	var h header
	h.decode(b)
	return h.cmd == cmdClose || h.cmd == cmdForceClose
}
