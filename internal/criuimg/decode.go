// Package criuimg decodes CRIU's images and answers the questions crtool asks of a dump: its process tree, root task, cgroups, root directory, mounts, statistics and FPU state.
package criuimg

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/checkpoint-restore/go-criu/v7/crit"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/cgroup"
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

// Kind is a kind of CRIU image crtool decodes.
type Kind struct {
	Magic string // crit's name for the image's magic number
	Entry func() proto.Message
	// Payload is set for images whose single entry is followed by raw
	// data rather than more entries (tcp-stream-*.img's queues).
	Payload bool
}

var (
	Inventory = Kind{Magic: "INVENTORY", Entry: func() proto.Message { return &inventory.InventoryEntry{} }}
	Pstree    = Kind{Magic: "PSTREE", Entry: func() proto.Message { return &pstree.PstreeEntry{} }}
	Core      = Kind{Magic: "CORE", Entry: func() proto.Message { return &criu_core.CoreEntry{} }}
	Ids       = Kind{Magic: "IDS", Entry: func() proto.Message { return &criu_core.TaskKobjIdsEntry{} }}
	Fdinfo    = Kind{Magic: "FDINFO", Entry: func() proto.Message { return &fdinfo.FdinfoEntry{} }}
	Files     = Kind{Magic: "FILES", Entry: func() proto.Message { return &fdinfo.FileEntry{} }}
	Fs        = Kind{Magic: "FS", Entry: func() proto.Message { return &fs.FsEntry{} }}
	Mm        = Kind{Magic: "MM", Entry: func() proto.Message { return &mm.MmEntry{} }}
	// PagemapImage's first entry is a PagemapHead, the others
	// PagemapEntry; crit knows and ignores the type given.
	Pagemap   = Kind{Magic: "PAGEMAP", Entry: func() proto.Message { return &pagemap.PagemapEntry{} }}
	Mounts    = Kind{Magic: "MNTS", Entry: func() proto.Message { return &mnt.MntEntry{} }}
	Stats     = Kind{Magic: "STATS", Entry: func() proto.Message { return &stats.StatsEntry{} }}
	Memfd     = Kind{Magic: "MEMFD_INODE", Entry: func() proto.Message { return &memfd.MemfdInodeEntry{} }}
	Netns     = Kind{Magic: "NETNS", Entry: func() proto.Message { return &netdev.NetnsEntry{} }}
	Cgroup    = Kind{Magic: "CGROUP", Entry: func() proto.Message { return &cgroup.CgroupEntry{} }}
	TCPStream = Kind{Magic: "TCP_STREAM", Entry: func() proto.Message { return &tcp_stream.TcpStreamEntry{} }, Payload: true}
)

// MaxEntries bounds the entries of one image. An entry can be as small as
// its 4-byte size word, and each decoded one costs a few hundred bytes and
// microseconds, so the 64 MiB an image may have would be 16 million
// entries, GiBs and a minute. Real images stay far below: one pagemap
// entry per run of dumped pages, one fdinfo entry per descriptor
// (RLIMIT_NOFILE).
var MaxEntries = 1 << 18

var magics = magic.LoadMagic()

// Decode decodes data, the content of a CRIU image, with go-criu's
// crit. crit trusts the image: it allocates whatever an entry's size word
// says (up to 4 GiB) and reads without checking for short reads, so
// checkFraming vets the layout first, and a panic inside crit becomes an
// error. Errors say what is wrong, not where: callers name the file.
func Decode(data []byte, kind Kind) (_ []proto.Message, err error) {
	if err := checkFraming(data, kind); err != nil {
		return nil, err
	}
	f, err := memFile(data)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder failed: %v", r)
		}
	}()
	img, err := crit.New(f, nil, "", false, true).Decode(kind.Entry())
	if err != nil {
		return nil, err
	}
	if img.Magic != kind.Magic {
		return nil, fmt.Errorf("magic %s, want %s", img.Magic, kind.Magic)
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
func checkFraming(data []byte, kind Kind) error {
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
		return fmt.Errorf("unknown magic 0x%08x (want %s)", m, kind.Magic)
	case name != kind.Magic:
		return fmt.Errorf("image of kind %s, want %s", name, kind.Magic)
	}
	for n := 0; off < len(data); n++ {
		if n >= MaxEntries {
			return fmt.Errorf("more than %d entries, more than crtool decodes", MaxEntries)
		}
		start := off
		size, ok := word()
		if !ok {
			return fmt.Errorf("entry %d at offset %d: %d bytes left, too few for a size", n, start, len(data)-start)
		}
		if uint64(size) > uint64(len(data)-off) {
			return fmt.Errorf("entry %d at offset %d: size %d runs past the end (%d bytes left)", n, start, size, len(data)-off)
		}
		off += int(size)
		if kind.Payload {
			return nil
		}
	}
	return nil
}

// memFile puts data into an unnamed file for crit, which reads only
// *os.File: a memfd, or else a deleted temporary file.
func memFile(data []byte) (*os.File, error) {
	var f *os.File
	if fd, err := unix.MemfdCreate("crtool-image", unix.MFD_CLOEXEC); err == nil {
		f = os.NewFile(uintptr(fd), "memfd:crtool-image")
	} else {
		tmp, err := os.CreateTemp("", "crtool-image-*")
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
