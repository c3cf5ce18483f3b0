package postcopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/crtool/crtool/internal/pageserver"
)

// Server is the source's page server as peers see it: a TCP listener that
// admits the first peer presenting the token and relays between it and
// CRIU's page server (the other end of a socket pair). Peers without the
// token are dropped; CRIU never sees them.
type Server struct {
	ln   net.Listener
	tok  []byte
	sent atomic.Int64 // bytes CRIU sent to the peer
	Logf func(format string, args ...any)
}

// Listen opens the listener on addr (host:port); the host must be given: a
// page server does not listen on every address.
func Listen(addr, token string) (*Server, error) {
	if err := CheckListenAddress(addr); err != nil {
		return nil, err
	}
	tok, err := decodeToken(token)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--page-server %s: %w", addr, err)
	}
	return &Server{ln: ln, tok: tok}, nil
}

// CheckListenAddress refuses a --page-server that names no host or every
// address.
func CheckListenAddress(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("--page-server %q: give ADDRESS:PORT, the address to listen on", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("--page-server %q: name one address, not every address", addr)
	}
	return nil
}

// Addr is where the server listens.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Sent is how many bytes of CRIU's answers reached the peer: non-zero once
// the destination has asked for pages, which it does only once restored.
func (s *Server) Sent() int64 { return s.sent.Load() }

// Close stops accepting peers.
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Serve waits for the peer and relays until CRIU or the peer ends the
// session. It closes criu when it returns.
func (s *Server) Serve(ctx context.Context, criu net.Conn) error {
	defer criu.Close()
	stop := context.AfterFunc(ctx, func() { s.ln.Close(); criu.Close() })
	defer stop()
	var peer net.Conn
	for peer == nil {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("page server: %w", ctx.Err())
			}
			return fmt.Errorf("page server: accept: %w", err)
		}
		if err := authenticate(c, s.tok); err != nil {
			s.logf("page server: refused %s: %v", c.RemoteAddr(), err)
			c.Close()
			continue
		}
		peer = c
	}
	s.ln.Close()
	s.logf("page server: serving %s", peer.RemoteAddr())
	defer peer.Close()
	stopPeer := context.AfterFunc(ctx, func() { peer.Close() })
	defer stopPeer()

	var wg sync.WaitGroup
	var toPeer, toCRIU error
	var closed bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		closed, toCRIU = relayRequests(criu, peer)
		// The peer is done asking; CRIU answers what it has.
		if uc, ok := criu.(interface{ CloseWrite() error }); ok {
			_ = uc.CloseWrite()
		}
	}()
	_, toPeer = io.Copy(&countWriter{w: peer, n: &s.sent}, criu)
	if tc, ok := peer.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	wg.Wait()
	if err := errors.Join(toPeer, toCRIU); err != nil && ctx.Err() == nil {
		return fmt.Errorf("page server: relay to %s: %w", peer.RemoteAddr(), err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("page server: %w", err)
	}
	if !closed {
		// CRIU takes a peer that hangs up for one that is done.
		return ErrPeerGone
	}
	return nil
}

// ErrPeerGone is a destination that went away before it had all pages.
var ErrPeerGone = errors.New("the destination broke off the transfer before it had received all pages")

// relayRequests copies the peer's commands to CRIU, one at a time (the
// peer only sends commands, no data), and reports whether the last was the
// final close.
func relayRequests(criu io.Writer, peer io.Reader) (closed bool, err error) {
	buf := make([]byte, pageserver.HeaderSize)
	for {
		if _, err := io.ReadFull(peer, buf); err != nil {
			if errors.Is(err, io.EOF) {
				return closed, nil
			}
			return closed, err
		}
		closed = pageserver.IsClose(buf)
		if _, err := criu.Write(buf); err != nil {
			return closed, err
		}
	}
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
