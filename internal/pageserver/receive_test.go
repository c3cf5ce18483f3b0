package pageserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/pagemap"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/crtool/crtool/internal/criuimg"
)

// client plays CRIU's side of a dump's page-server conversation.
type client struct {
	t    *testing.T
	conn net.Conn
}

func (c *client) send(cmd uint32, nr, vaddr, dst uint64, data []byte) {
	c.t.Helper()
	b := make([]byte, headerSize)
	(&header{cmd: cmd, nrPages: nr, vaddr: vaddr, dstID: dst}).encode(b)
	if _, err := c.conn.Write(append(b, data...)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read(n int) []byte {
	c.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c.conn, b); err != nil {
		c.t.Fatalf("read answer: %v", err)
	}
	return b
}

func pages(n int, fill byte) []byte { return bytes.Repeat([]byte{fill}, n*PageSize) }

func startReceive(t *testing.T, sink Sink) (*client, chan error) {
	t.Helper()
	mine, theirs, err := SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.FileConn(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); mine.Close() })
	done := make(chan error, 1)
	go func() { done <- Receive(context.Background(), mine, sink) }()
	return &client{t: t, conn: conn}, done
}

func TestReceiveWritesCRIUImages(t *testing.T) {
	dir := t.TempDir()
	c, done := startReceive(t, &Images{Dir: dir})
	pid1 := Image{ID: 1}.dstID()
	c.send(cmdOpen2, 0, 0, pid1, nil)
	if got := c.read(1); got[0] != 0 {
		t.Fatalf("open answered has_parent=%d", got[0])
	}
	c.send(cmdAddF|FlagPresent<<cmdBits, 3, 0x400000, pid1, pages(3, 'a'))
	c.send(cmdAddF|FlagLazy<<cmdBits, 2, 0x500000, pid1, nil)
	shm := Image{Shmem: true, ID: 7}.dstID()
	c.send(cmdOpen2, 0, 0, shm, nil)
	c.read(1)
	c.send(cmdAdd, 1, 0, shm, pages(1, 'b'))
	c.send(cmdForceClose, 0, 0, 0, nil)
	if status := binary.NativeEndian.Uint32(c.read(4)); status != 0 {
		t.Fatalf("close answered %d", status)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		pagemap string
		pagesID uint32
		entries []Entry
		pages   []byte
	}{
		{"pagemap-1.img", 1, []Entry{{0x400000, 3, FlagPresent}, {0x500000, 2, FlagLazy}}, pages(3, 'a')},
		{"pagemap-shmem-7.img", 2, []Entry{{0, 1, FlagPresent}}, pages(1, 'b')},
	} {
		data, err := os.ReadFile(filepath.Join(dir, tc.pagemap))
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := criuimg.Decode(data, criuimg.Pagemap)
		if err != nil {
			t.Fatalf("%s: %v", tc.pagemap, err)
		}
		if len(msgs) != 1+len(tc.entries) {
			t.Fatalf("%s: %d entries, want %d", tc.pagemap, len(msgs), 1+len(tc.entries))
		}
		if id := msgs[0].(*pagemap.PagemapHead).GetPagesId(); id != tc.pagesID {
			t.Errorf("%s: pages_id %d, want %d", tc.pagemap, id, tc.pagesID)
		}
		for i, want := range tc.entries {
			pe := msgs[1+i].(*pagemap.PagemapEntry)
			if pe.GetVaddr() != want.Vaddr || pe.GetFlags() != want.Flags || nrPages(pe) != want.NrPages {
				t.Errorf("%s entry %d: vaddr %#x flags %d nr %d, want %+v", tc.pagemap, i, pe.GetVaddr(), pe.GetFlags(), nrPages(pe), want)
			}
		}
		got, err := os.ReadFile(filepath.Join(dir, PagesName(tc.pagesID)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tc.pages) {
			t.Errorf("%s: %d bytes of pages, want %d", PagesName(tc.pagesID), len(got), len(tc.pages))
		}
	}
}

// nrPages reads CRIU 4's 64-bit nr_pages (field 5), which go-criu's
// pagemap.proto does not know.
func nrPages(pe *pagemap.PagemapEntry) uint64 {
	b := pe.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		v, m := protowire.ConsumeVarint(b)
		if typ != protowire.VarintType || m < 0 {
			return 0
		}
		b = b[m:]
		if num == 5 {
			return v
		}
	}
	return 0
}

// failingPages is a pages image that cannot be written (a full disk).
type failingPages struct{}

func (failingPages) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }
func (failingPages) Close() error              { return nil }

func TestReceiveSinkFailureBreaksOff(t *testing.T) {
	sink := &Images{Dir: t.TempDir(), Pages: func(string) (io.WriteCloser, error) { return failingPages{}, nil }}
	c, done := startReceive(t, sink)
	pid := Image{ID: 1}.dstID()
	c.send(cmdOpen2, 0, 0, pid, nil)
	c.read(1)
	go func() {
		// CRIU goes on sending; the receiver stops reading.
		b := make([]byte, headerSize)
		(&header{cmd: cmdAddF | FlagPresent<<cmdBits, nrPages: 64, dstID: pid}).encode(b)
		_, _ = c.conn.Write(append(b, pages(64, 'x')...))
	}()
	err := <-done
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("no space left")) {
		t.Fatalf("Receive = %v, want the sink's error", err)
	}
}

func TestReceiveEarlyClose(t *testing.T) {
	c, done := startReceive(t, &Images{Dir: t.TempDir()})
	pid := Image{ID: 1}.dstID()
	c.send(cmdOpen2, 0, 0, pid, nil)
	c.read(1)
	c.send(cmdAddF|FlagPresent<<cmdBits, 2, 0, pid, pages(1, 'x')) // one page short
	c.conn.Close()
	if err := <-done; !errors.Is(err, ErrEarlyClose) {
		t.Fatalf("Receive = %v, want ErrEarlyClose", err)
	}
}

func TestReceiveCancel(t *testing.T) {
	mine, theirs, err := SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	defer mine.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Receive(ctx, mine, &Images{Dir: t.TempDir()}) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive = %v, want context.Canceled", err)
	}
}
