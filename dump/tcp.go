package dump

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
)

// connections returns the TCP sockets of the captured namespace that are
// connected (not listening, not closed) and held by the container's
// processes.
func connections(cfg *format.Config, fds []fdInfo) []format.Socket {
	held := map[uint32]bool{}
	for _, f := range fds {
		if ino, ok := socketInode(f.target); ok {
			held[ino] = true
		}
	}
	var out []format.Socket
	for _, s := range cfg.Sockets {
		if s.Proto == "tcp" && s.State != "LISTEN" && s.State != "CLOSE" && held[s.Inode] {
			out = append(out, s)
		}
	}
	return out
}

func socketInode(target string) (uint32, bool) {
	rest, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 32)
	return uint32(n), err == nil
}

// repairTCP duplicates each of the container's TCP connections into crtool
// (pidfd_getfd) and puts it into repair mode. A socket closed in repair mode
// vanishes without sending a FIN or a reset, so killing the processes
// leaves nothing for the peer to see. The caller closes the returned
// descriptors once the processes are gone.
func repairTCP(conns []format.Socket, fds []fdInfo) ([]int, error) {
	want := map[uint32]bool{}
	for _, s := range conns {
		want[s.Inode] = true
	}
	var out []int
	var errs []error
	for _, f := range fds {
		ino, ok := socketInode(f.target)
		if !ok || !want[ino] {
			continue
		}
		delete(want, ino) // one descriptor per socket is enough
		fd, err := dupFrom(f.pid, f.fd)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, 1); err != nil {
			unix.Close(fd)
			errs = append(errs, fmt.Errorf("repair mode for socket %d of pid %d: %w", f.fd, f.pid, err))
			continue
		}
		out = append(out, fd)
	}
	return out, errors.Join(errs...)
}

// dupFrom copies descriptor fd of process pid into crtool.
func dupFrom(pid, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	n, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("copy socket %d of pid %d: %w", fd, pid, err)
	}
	return n, nil
}
