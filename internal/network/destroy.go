package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
)

// sockDestroy is SOCK_DESTROY from linux/sock_diag.h.
const sockDestroy = 21

// DestroyTCP aborts the TCP sockets of the namespace at nsPath whose local
// and remote addresses match one of socks, as `ss -K` does (the kernel needs
// CONFIG_INET_DIAG_DESTROY). Listening sockets and sockets already gone are
// skipped. It returns how many sockets it destroyed.
func DestroyTCP(nsPath string, socks []format.Socket) (int, error) {
	fd, err := diagSocketIn(nsPath)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	n := 0
	for _, s := range socks {
		if s.Proto != "tcp" || s.Remote == "" || s.State == "LISTEN" {
			continue
		}
		local, err1 := netip.ParseAddrPort(s.Local)
		remote, err2 := netip.ParseAddrPort(s.Remote)
		if err1 != nil || err2 != nil {
			return n, fmt.Errorf("destroy socket %s -> %s: bad address", s.Local, s.Remote)
		}
		err := destroyOne(fd, local, remote)
		switch {
		case err == nil:
			n++
		case errors.Is(err, unix.ENOENT):
		default:
			return n, fmt.Errorf("destroy socket %s -> %s in %s: %w", s.Local, s.Remote, nsPath, err)
		}
	}
	return n, nil
}

// diagSocketIn opens a sock_diag netlink socket that belongs to the
// namespace at nsPath: a socket stays in the namespace it was created in, so
// a thread only visits the namespace for the socket(2) call.
func diagSocketIn(nsPath string) (int, error) {
	target, err := openNetns(nsPath)
	if err != nil {
		return -1, err
	}
	defer target.Close()
	fd := -1
	err = inNetns(target, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("sock_diag socket in %s: %w", nsPath, err)
	}
	return fd, nil
}

// destroyOne sends one SOCK_DESTROY request and reads the kernel's answer.
func destroyOne(fd int, local, remote netip.AddrPort) error {
	family := uint8(unix.AF_INET)
	if local.Addr().Is6() && !local.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	// struct nlmsghdr + struct inet_diag_req_v2.
	msg := make([]byte, unix.NLMSG_HDRLEN+56)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], sockDestroy)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	req := msg[unix.NLMSG_HDRLEN:]
	req[0] = family
	req[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:], 0xffffffff) // all states
	id := req[8:]
	binary.BigEndian.PutUint16(id[0:], local.Port())
	binary.BigEndian.PutUint16(id[2:], remote.Port())
	putAddr(id[4:20], local.Addr(), family)
	putAddr(id[20:36], remote.Addr(), family)
	binary.NativeEndian.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	// The answer to an NLM_F_ACK request is one NLMSG_ERROR message whose
	// first field is 0 or a negative errno.
	if n < unix.NLMSG_HDRLEN+4 {
		return fmt.Errorf("short sock_diag answer (%d bytes)", n)
	}
	if typ := binary.NativeEndian.Uint16(buf[4:]); typ != unix.NLMSG_ERROR {
		return fmt.Errorf("unexpected sock_diag answer type %d", typ)
	}
	if e := int32(binary.NativeEndian.Uint32(buf[unix.NLMSG_HDRLEN:])); e != 0 {
		return unix.Errno(-e)
	}
	return nil
}

func putAddr(dst []byte, a netip.Addr, family uint8) {
	if family == unix.AF_INET {
		b := a.Unmap().As4()
		copy(dst, b[:])
		return
	}
	b := a.As16()
	copy(dst, b[:])
}
