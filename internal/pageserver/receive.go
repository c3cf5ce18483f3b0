package pageserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Sink takes the images CRIU sends. Calls come from one goroutine, in the
// order CRIU sends them: Open, the Adds of that pagemap, the next Open, ...,
// and finally Close.
type Sink interface {
	// Open starts the pagemap of img; it ends the previous one.
	Open(img Image) error
	// Add records one entry. When e.Present(), pages yields its
	// e.Bytes() bytes, which Add must consume.
	Add(e Entry, pages io.Reader) error
	// Close ends the last pagemap once CRIU has sent everything. CRIU's
	// dump succeeds only if Close returns nil.
	Close() error
}

// SocketPair makes the connection for a dump: CRIU gets criu (a
// SOCK_STREAM socket, which CRIU splices pages into) as its page-server
// socket, and Receive reads from mine.
func SocketPair() (mine net.Conn, criu *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("page server socket: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "page-server")
	defer f.Close()
	mine, err = net.FileConn(f)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("page server socket: %w", err)
	}
	// Large buffers keep CRIU's splices long; the default 200 KiB made
	// it switch between sending and waiting every few pages.
	if uc, ok := mine.(*net.UnixConn); ok {
		_ = uc.SetReadBuffer(4 << 20)
	}
	_ = unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	return mine, os.NewFile(uintptr(fds[1]), "page-server-criu"), nil
}

// ErrEarlyClose is CRIU ending the connection before its final command:
// the dump failed on CRIU's side.
var ErrEarlyClose = errors.New("criu closed the page server connection before sending all pages")

// Receive serves one CRIU dump on conn until CRIU's final close command,
// which it answers with the outcome of sink.Close. Cancelling ctx breaks the
// connection off. On any error Receive returns without answering: the
// caller closes conn, and CRIU's dump fails.
func Receive(ctx context.Context, conn net.Conn, sink Sink) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	err := receive(conn, sink)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("page server: %w", ctx.Err())
	}
	return err
}

func receive(conn net.Conn, sink Sink) error {
	buf := make([]byte, headerSize)
	var h header
	var cur *Image
	body := &exactReader{r: conn}
	open := func(dstID uint64) error {
		img, err := decodeImage(dstID)
		if err != nil {
			return fmt.Errorf("page server: %w", err)
		}
		if err := sink.Open(img); err != nil {
			return err
		}
		cur = &img
		return nil
	}
	for {
		if _, err := io.ReadFull(conn, buf); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return ErrEarlyClose
			}
			return fmt.Errorf("page server: read command: %w", err)
		}
		h.decode(buf)
		cmd := h.cmd & cmdMask
		switch cmd {
		case cmdOpen, cmdOpen2:
			if err := open(h.dstID); err != nil {
				return err
			}
			if cmd == cmdOpen2 {
				// No parent images: every page comes in full.
				if _, err := conn.Write([]byte{0}); err != nil {
					return fmt.Errorf("page server: answer open: %w", err)
				}
			}
		case cmdParent:
			var no [4]byte
			if _, err := conn.Write(no[:]); err != nil {
				return fmt.Errorf("page server: answer parent query: %w", err)
			}
		case cmdAdd, cmdAddF, cmdHole:
			flags := uint32(FlagPresent)
			switch cmd {
			case cmdAddF:
				flags = h.cmd >> cmdBits
			case cmdHole:
				flags = FlagParent
			}
			if cur == nil || cur.dstID() != h.dstID {
				// CRIU's own server accepts pages without an open
				// (old CRIUs sent them so).
				if err := open(h.dstID); err != nil {
					return err
				}
			}
			e := Entry{Vaddr: h.vaddr, NrPages: h.nrPages, Flags: flags}
			var pages io.Reader
			if e.Present() {
				body.left = e.Bytes()
				pages = body
			}
			if err := sink.Add(e, pages); err != nil {
				return err
			}
			if e.Present() && body.left != 0 {
				return fmt.Errorf("page server: %d bytes of the pages at %#x of %s left unread", body.left, e.Vaddr, cur)
			}
		case cmdClose, cmdForceClose:
			err := sink.Close()
			status := int32(0)
			if err != nil {
				status = -1
			}
			var b [4]byte
			binary.NativeEndian.PutUint32(b[:], uint32(status))
			if _, werr := conn.Write(b[:]); werr != nil && err == nil {
				err = fmt.Errorf("page server: answer close: %w", werr)
			}
			return err
		case cmdGet:
			return errors.New("page server: criu asked for pages (lazy restore) from a dump's receiver")
		default:
			return fmt.Errorf("page server: unknown command %#x", h.cmd)
		}
	}
}

// exactReader reads the left bytes of the current entry from the socket.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) && e.left > 0 {
		err = ErrEarlyClose
	}
	return n, err
}
