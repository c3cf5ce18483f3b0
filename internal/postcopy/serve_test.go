package postcopy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/crtool/crtool/internal/pageserver"
	"github.com/crtool/crtool/internal/testutil"
)

func TestListenRefusesEveryAddress(t *testing.T) {
	tok, _ := NewToken()
	for _, addr := range []string{":27000", "0.0.0.0:27000", "[::]:27000", "27000"} {
		if s, err := Listen(addr, tok); err == nil {
			s.Close()
			t.Errorf("Listen(%q) succeeded", addr)
		} else if !strings.Contains(err.Error(), "--page-server") {
			t.Errorf("Listen(%q): %v does not name the flag", addr, err)
		}
	}
}

// cmd is one page-server command as the lazy-pages daemon sends it.
func cmd(c uint32) []byte {
	b := make([]byte, pageserver.HeaderSize)
	binary.NativeEndian.PutUint32(b, c)
	return b
}

// serve starts a Server on loopback with CRIU's side played by the test.
func serve(t *testing.T) (s *Server, token string, criu net.Conn, done chan error) {
	t.Helper()
	token, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	s, err = Listen("127.0.0.1:0", token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// A socket pair, as CRIU's: Serve half-closes it when the peer is done.
	mine, theirs, err := pageserver.SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	criu, err = net.FileConn(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { criu.Close() })
	done = make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), mine) }()
	return s, token, criu, done
}

func dial(t *testing.T, s *Server, token string) net.Conn {
	t.Helper()
	f, err := Dial(context.Background(), s.Addr(), token)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestServeRelaysToThePeerWithTheToken(t *testing.T) {
	s, token, criu, done := serve(t)
	other, _ := NewToken()
	if _, err := Dial(context.Background(), s.Addr(), other); !errors.Is(err, ErrBadToken) {
		t.Fatalf("Dial with another token = %v, want ErrBadToken", err)
	}
	peer := dial(t, s, token)

	get := cmd(7) // PS_IOV_GET
	go func() { _, _ = peer.Write(append(get, cmd(0x1023)...)) }()
	got := make([]byte, 2*pageserver.HeaderSize)
	if _, err := io.ReadFull(criu, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:pageserver.HeaderSize], get) {
		t.Error("the request reached CRIU changed")
	}
	answer := bytes.Repeat([]byte("p"), 8192)
	go func() { _, _ = criu.Write(answer); criu.Close() }()
	recv, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(recv, answer) {
		t.Errorf("peer received %d bytes, want %d", len(recv), len(answer))
	}
	peer.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if s.Sent() != int64(len(answer)) {
		t.Errorf("Sent = %d, want %d", s.Sent(), len(answer))
	}
}

func TestServePeerGoneBeforeClose(t *testing.T) {
	s, token, criu, done := serve(t)
	peer := dial(t, s, token)
	// CRIU reads until the peer's end reaches it, then ends the session.
	go func() { _, _ = io.Copy(io.Discard, criu); criu.Close() }()
	if _, err := peer.Write(cmd(7)); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	if err := <-done; !errors.Is(err, ErrPeerGone) {
		t.Fatalf("Serve = %v, want ErrPeerGone", err)
	}
}

func TestEnsurePipeMaxSizeKeepsALargerValue(t *testing.T) {
	b, err := os.ReadFile(PipeMaxSizePath)
	testutil.Require(t, err == nil, fmt.Sprintf("no %s: %v", PipeMaxSizePath, err))
	restore, _, err := EnsurePipeMaxSize(4096) // below any limit: no change
	if err != nil {
		t.Fatal(err)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(PipeMaxSizePath)
	if !bytes.Equal(b, after) {
		t.Errorf("fs.pipe-max-size changed from %s to %s", b, after)
	}
}
