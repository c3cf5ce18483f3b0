package network

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
)

func TestCheckPortsFree(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	free, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	err = CheckPortsFree([]format.PortMapping{
		{HostPort: freePort, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: busy, ContainerPort: 80, Protocol: "tcp"},
		{HostIP: "127.0.0.1", HostPort: busy, ContainerPort: 81, Protocol: "tcp"},
	})
	if !errors.Is(err, errdefs.ErrConflict) || strings.Count(err.Error(), "in use") != 2 || strings.Contains(err.Error(), "port "+strconv.Itoa(freePort)) {
		t.Fatalf("CheckPortsFree = %v, want both mappings of port %d in use, and only them", err, busy)
	}
}
