package postcopy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// hello opens every connection to a source: the magic, then the token.
const (
	magic     = "CRTLAZY1"
	tokenSize = 32
	// accepted is the source's one-byte answer to a valid token.
	accepted = 'k'
	// handshakeTimeout bounds how long an unauthenticated peer may hold
	// the source's listener.
	handshakeTimeout = 10 * time.Second
)

// ErrBadToken is a peer that does not hold the archive's token.
var ErrBadToken = errors.New("the page server refused the token: restore from the archive this dump wrote")

// NewToken returns a random token, hex-encoded. The archive carries it: a
// peer that can read the archive has the container's memory anyway.
func NewToken() (string, error) {
	b := make([]byte, tokenSize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func decodeToken(token string) ([]byte, error) {
	b, err := hex.DecodeString(token)
	if err != nil || len(b) != tokenSize {
		return nil, errors.New("malformed page server token")
	}
	return b, nil
}

// Dial connects to the source's page server at addr, authenticates with
// token and returns the connected socket, ready for CRIU's lazy-pages
// daemon.
func Dial(ctx context.Context, addr, token string) (*os.File, error) {
	tok, err := decodeToken(token)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: handshakeTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to the page server: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if _, err := conn.Write(append([]byte(magic), tok...)); err != nil {
		return nil, fmt.Errorf("page server %s: %w", addr, err)
	}
	var ok [1]byte
	if _, err := io.ReadFull(conn, ok[:]); err != nil || ok[0] != accepted {
		return nil, fmt.Errorf("page server %s: %w", addr, ErrBadToken)
	}
	_ = conn.SetDeadline(time.Time{})
	f, err := conn.(*net.TCPConn).File()
	if err != nil {
		return nil, fmt.Errorf("page server %s: %w", addr, err)
	}
	return f, nil
}

// authenticate reads a peer's hello and answers it.
func authenticate(conn net.Conn, tok []byte) error {
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	buf := make([]byte, len(magic)+tokenSize)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("read token: %w", err)
	}
	if string(buf[:len(magic)]) != magic || subtle.ConstantTimeCompare(buf[len(magic):], tok) != 1 {
		return ErrBadToken
	}
	_, err := conn.Write([]byte{accepted})
	return err
}
