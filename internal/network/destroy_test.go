package network

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/crtool/crtool/format"
)

func TestDestroyTCP(t *testing.T) {
	e := newEnv(t)
	ns, path := e.netns("d")
	e.ip(ns, "link", "set", "lo", "up")
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			var ln net.Listener
			var client net.Conn
			inside(t, path, func() {
				var err error
				if ln, err = net.Listen(network, addr); err != nil {
					t.Fatal(err)
				}
				if client, err = net.Dial(network, ln.Addr().String()); err != nil {
					t.Fatal(err)
				}
			})
			defer ln.Close()
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()

			cfg, err := Capture(path)
			if err != nil {
				t.Fatal(err)
			}
			var target []format.Socket
			for _, s := range cfg.Sockets {
				if s.Proto == "tcp" && s.Local == client.LocalAddr().String() {
					target = append(target, s)
				}
			}
			if len(target) != 1 {
				t.Fatalf("client socket not in the capture: %+v", cfg.Sockets)
			}
			n, err := DestroyTCP(path, target)
			if err != nil || n != 1 {
				t.Fatalf("DestroyTCP = %d, %v", n, err)
			}
			_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := client.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Fatalf("read on a destroyed socket: %v, want an abort", err)
			}
			// Gone sockets are not an error.
			if n, err := DestroyTCP(path, target); err != nil || n != 0 {
				t.Fatalf("second DestroyTCP = %d, %v", n, err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
