package network

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestLockDropsEverythingSilently(t *testing.T) {
	e := newEnv(t)
	ns, path := e.netns("l")
	e.ip(ns, "link", "set", "lo", "up")
	ln := acceptor(t, path, net.ListenConfig{})
	dial := func() error { return dialOnce(t, path, ln, net.Dialer{Timeout: 300 * time.Millisecond}) }
	if err := dial(); err != nil {
		t.Fatalf("before the lock: %v", err)
	}

	l, err := LockNamespace(path, e.id)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := Tables(path, LockPrefix)
	if err != nil || !slices.Contains(tables, LockPrefix+e.id) {
		t.Fatalf("Tables = %v, %v; want the lock", tables, err)
	}
	// Silence, not a reset: the connection attempt times out.
	err = dial()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial under the lock: %v, want a timeout", err)
	}

	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("second unlock: %v", err)
	}
	if tables, _ := Tables(path, LockPrefix); len(tables) != 0 {
		t.Fatalf("tables left: %v", tables)
	}
}

func TestUnlockGoneNamespace(t *testing.T) {
	l := &Lock{NsPath: "/run/netns/crtnt-does-not-exist", Table: LockPrefix + "x"}
	if err := l.Unlock(); err != nil {
		t.Fatalf("unlock of a gone namespace: %v", err)
	}
	if _, err := LockNamespace(os.DevNull, "x"); err == nil {
		t.Fatal("locked something that is not a namespace")
	}
}

// TestLockPassesCRIUsPackets checks that packets CRIU marks as its own get
// through the lock while unmarked ones still meet silence: CRIU sends such
// packets (the FIN of a closed TCP connection) while it restores under the
// lock.
func TestLockPassesCRIUsPackets(t *testing.T) {
	e := newEnv(t)
	ns, path := e.netns("m")
	e.ip(ns, "link", "set", "lo", "up")
	if _, err := LockNamespace(path, e.id); err != nil {
		t.Fatal(err)
	}
	// Both ends marked: the listener's SYN-ACK carries its socket's mark.
	marked := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, CRIUPacketMark)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln := acceptor(t, path, marked)
	if err := dialOnce(t, path, ln, net.Dialer{Timeout: time.Second, Control: marked.Control}); err != nil {
		t.Fatalf("marked dial under the lock: %v", err)
	}
	err := dialOnce(t, path, ln, net.Dialer{Timeout: 300 * time.Millisecond})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("unmarked dial under the lock: %v, want a timeout", err)
	}
}

// acceptor listens on a loopback port inside the namespace at path and
// accepts (and closes) connections until the test ends.
func acceptor(t *testing.T, path string, lc net.ListenConfig) net.Listener {
	t.Helper()
	var ln net.Listener
	inside(t, path, func() {
		var err error
		if ln, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// dialOnce connects to ln from inside the namespace at path with d.
func dialOnce(t *testing.T, path string, ln net.Listener, d net.Dialer) error {
	t.Helper()
	var err error
	inside(t, path, func() {
		var c net.Conn
		if c, err = d.Dial("tcp4", ln.Addr().String()); err == nil {
			c.Close()
		}
	})
	return err
}
