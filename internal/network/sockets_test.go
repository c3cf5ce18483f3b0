package network

import (
	"io"
	"net"
	"runtime"
	"testing"

	vnetns "github.com/vishvananda/netns"

	"github.com/crtool/crtool/format"
)

// inside runs fn with the calling goroutine's thread in the namespace at
// path; sockets fn opens stay in that namespace.
func inside(t *testing.T, path string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := vnetns.Set(target); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := vnetns.Set(orig); err != nil {
			// The thread must not run anything else in the wrong namespace.
			panic(err)
		}
	}()
	fn()
}

func TestCaptureSockets(t *testing.T) {
	e := newEnv(t)
	ns, path := e.netns("k")
	e.ip(ns, "link", "set", "lo", "up")

	var ln4, ln6 net.Listener
	var client, server net.Conn
	var udp net.PacketConn
	inside(t, path, func() {
		var err error
		if ln4, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln6, err = net.Listen("tcp6", "[::1]:0"); err != nil {
			t.Fatal(err)
		}
		if client, err = net.Dial("tcp4", ln4.Addr().String()); err != nil {
			t.Fatal(err)
		}
		if udp, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	for _, c := range []io.Closer{ln4, ln6, client, udp} {
		t.Cleanup(func() { c.Close() })
	}
	server, err := ln4.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })

	cfg, err := Capture(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []format.Socket{
		{Proto: "tcp", Family: "inet", State: "LISTEN", Local: ln4.Addr().String()},
		{Proto: "tcp", Family: "inet6", State: "LISTEN", Local: ln6.Addr().String()},
		{Proto: "tcp", Family: "inet", State: "ESTABLISHED", Local: client.LocalAddr().String(), Remote: client.RemoteAddr().String()},
		{Proto: "tcp", Family: "inet", State: "ESTABLISHED", Local: server.LocalAddr().String(), Remote: server.RemoteAddr().String()},
		{Proto: "udp", Family: "inet", State: "UNCONN", Local: udp.LocalAddr().String()},
	} {
		found := false
		for _, s := range cfg.Sockets {
			if s.Proto == want.Proto && s.Family == want.Family && s.State == want.State && s.Local == want.Local && s.Remote == want.Remote {
				found = true
				if s.Inode == 0 {
					t.Errorf("socket %+v has no inode", s)
				}
				if s.UID != 0 {
					t.Errorf("socket %+v: uid %d, want 0", s, s.UID)
				}
			}
		}
		if !found {
			t.Errorf("socket %+v not captured; have %+v", want, cfg.Sockets)
		}
	}
	if len(cfg.Sockets) != 5 {
		t.Errorf("captured %d sockets, want 5 (sockets of other namespaces leaking in?): %+v", len(cfg.Sockets), cfg.Sockets)
	}
}
