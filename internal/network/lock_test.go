package network

import (
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"
)

func TestLockDropsEverythingSilently(t *testing.T) {
	e := newEnv(t)
	ns, path := e.netns("l")
	e.ip(ns, "link", "set", "lo", "up")
	var ln net.Listener
	inside(t, path, func() {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dial := func() error {
		var err error
		inside(t, path, func() {
			var c net.Conn
			c, err = net.DialTimeout("tcp4", ln.Addr().String(), 300*time.Millisecond)
			if err == nil {
				c.Close()
			}
		})
		return err
	}
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
