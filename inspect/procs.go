package inspect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	criu_core "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/memfd"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	sk_inet "github.com/checkpoint-restore/go-criu/v7/crit/images/sk-inet"
	sk_unix "github.com/checkpoint-restore/go-criu/v7/crit/images/sk-unix"
	tcp_stream "github.com/checkpoint-restore/go-criu/v7/crit/images/tcp-stream"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Task states of core-*.img (CRIU's TASK_*).
var taskStates = map[uint32]string{1: StateAlive, 2: StateDead, 3: StateStopped, 6: StateZombie}

// processes builds the process list from pstree.img and, per process, the
// images opts ask for.
func processes(c *contents, md *metadata, opts Options) ([]Process, []string, error) {
	tree := checkpointPrefix + "pstree.img"
	msgs, err := c.image(tree, pstreeImage)
	if err != nil {
		return nil, nil, err
	}
	var procs []Process
	seen := map[uint32]bool{}
	for _, m := range msgs {
		e := m.(*pstree.PstreeEntry)
		if seen[e.GetPid()] {
			return nil, nil, corruptImage(tree, "pid %d appears twice", e.GetPid())
		}
		seen[e.GetPid()] = true
		procs = append(procs, Process{PID: e.GetPid(), PPID: e.GetPpid(), PGID: e.GetPgid(), SID: e.GetSid(), Threads: e.GetThreads()})
	}
	if opts.PID != 0 {
		if procs = subtree(procs, opts.PID); procs == nil {
			return nil, nil, fmt.Errorf("%w: pid %d (the tree has %s)", ErrNoProcess, opts.PID, pidList(msgs))
		}
	}
	fx, err := newFileIndex(c, md, opts)
	if err != nil {
		return nil, nil, err
	}
	var notes []string
	for i := range procs {
		p := &procs[i]
		if err := readCore(c, p); err != nil {
			return nil, nil, err
		}
		if p.State != StateAlive && p.State != StateStopped {
			continue // dead and zombie tasks have nothing more
		}
		if opts.Files || opts.Sockets {
			if err := fx.readFiles(p, opts); err != nil {
				return nil, nil, err
			}
		}
		if opts.Memory {
			if p.Memory, err = memory(c, fx, p.PID); err != nil {
				return nil, nil, err
			}
			if p.Memory == nil {
				notes = append(notes, fmt.Sprintf("memory of pid %d not shown: no mm-%d.img or pagemap-%d.img", p.PID, p.PID, p.PID))
			}
		}
		if opts.Cmdline || opts.Env {
			n, err := readStrings(c, p, opts)
			if err != nil {
				return nil, nil, err
			}
			notes = append(notes, n...)
		}
	}
	return procs, notes, nil
}

// readStrings reads a process's command line and environment from its
// memory, as /proc/PID/cmdline and environ would show them.
func readStrings(c *contents, p *Process, opts Options) ([]string, error) {
	var notes []string
	area := func(env bool) ([]byte, bool, error) {
		b, cut, note, err := c.readArea(p.PID, env)
		if note != "" {
			notes = append(notes, note)
		}
		if cut {
			notes = append(notes, fmt.Sprintf("%s of pid %d cut to %d bytes", areaName(env), p.PID, maxStringArea))
		}
		return b, note == "" && err == nil, err
	}
	if opts.Cmdline {
		args, ok, err := area(false)
		if err != nil {
			return nil, err
		}
		if ok && len(args) > 0 && args[len(args)-1] != 0 {
			// The final NUL was overwritten: the program rewrote its
			// title (setproctitle), which runs on into the environment
			// area up to a NUL, and Linux shows it so too.
			env, ok, err := area(true)
			if err != nil {
				return nil, err
			}
			if ok {
				if i := bytes.IndexByte(env, 0); i >= 0 {
					env = env[:i]
				}
				args = append(args, env...)
			}
		}
		p.Cmdline = splitNul(args)
	}
	if opts.Env {
		env, _, err := area(true)
		if err != nil {
			return nil, err
		}
		p.Env = nonEmpty(splitNul(env))
	}
	return dedupe(notes), nil
}

func dedupe(ss []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func areaName(env bool) string {
	if env {
		return "environment"
	}
	return "command line"
}

// subtree keeps pid and its descendants, in their order; nil when pid is
// not there. A hostile tree with a cycle ends where it repeats.
func subtree(procs []Process, pid uint32) []Process {
	keep := map[uint32]bool{pid: true}
	found := false
	for _, p := range procs {
		found = found || p.PID == pid
	}
	if !found {
		return nil
	}
	for changed := true; changed; {
		changed = false
		for _, p := range procs {
			if !keep[p.PID] && keep[p.PPID] && p.PID != p.PPID {
				keep[p.PID], changed = true, true
			}
		}
	}
	var out []Process
	for _, p := range procs {
		if keep[p.PID] {
			out = append(out, p)
		}
	}
	return out
}

func pidList(msgs []proto.Message) string {
	var ids []string
	for _, m := range msgs {
		ids = append(ids, strconv.Itoa(int(m.(*pstree.PstreeEntry).GetPid())))
		if len(ids) == 20 {
			ids = append(ids, "...")
			break
		}
	}
	return "pids " + strings.Join(ids, ", ")
}

// readCore fills in what core-PID.img says about the task.
func readCore(c *contents, p *Process) error {
	name := fmt.Sprintf("%score-%d.img", checkpointPrefix, p.PID)
	msg, err := c.firstEntry(name, coreImage)
	if err != nil {
		return err
	}
	core := msg.(*criu_core.CoreEntry)
	tc := core.GetTc()
	if tc == nil {
		return corruptImage(name, "no task core")
	}
	p.Comm = tc.GetComm()
	if s, ok := taskStates[tc.GetTaskState()]; ok {
		p.State = s
	} else {
		p.State = fmt.Sprintf("state %d", tc.GetTaskState())
	}
	if cr := core.GetThreadCore().GetCreds(); cr != nil {
		uid, gid := cr.GetUid(), cr.GetGid()
		p.UID, p.GID = &uid, &gid
	}
	return nil
}

// fileIndex resolves file ids (fdinfo, fs, mm) through files.img.
type fileIndex struct {
	c           *contents
	files       map[uint32]*fdinfo.FileEntry
	memfds      map[uint64]string // memfd inode id -> name
	external    map[string]bool   // pipe:[N] keys that lead outside
	fdinfoPerID bool
}

func newFileIndex(c *contents, md *metadata, opts Options) (*fileIndex, error) {
	fx := &fileIndex{c: c, files: map[uint32]*fdinfo.FileEntry{}, memfds: map[uint64]string{}, external: map[string]bool{}, fdinfoPerID: true}
	if !opts.Files && !opts.Sockets && !opts.Memory {
		return fx, nil
	}
	name := checkpointPrefix + "files.img"
	if c.has(name) {
		msgs, err := c.image(name, filesImage)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			f := m.(*fdinfo.FileEntry)
			fx.files[f.GetId()] = f
		}
	}
	if name := checkpointPrefix + "memfd.img"; c.has(name) {
		msgs, err := c.image(name, memfdImage)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			e := m.(*memfd.MemfdInodeEntry)
			fx.memfds[e.GetInodeId()] = e.GetName()
		}
	}
	if inv, err := c.firstEntry(checkpointPrefix+"inventory.img", inventoryImage); err == nil {
		fx.fdinfoPerID = inv.(*inventory.InventoryEntry).GetFdinfoPerId()
	}
	for _, d := range md.descriptors {
		fx.external[d] = true
	}
	if md.crtool != nil {
		for _, f := range md.crtool.Files {
			fx.external[f.Key] = true
		}
	}
	return fx, nil
}

// path names the file with the given id as /proc/PID/fd would.
func (fx *fileIndex) path(id uint32) string {
	f, ok := fx.files[id]
	if !ok {
		return fmt.Sprintf("unknown file %d", id)
	}
	switch f.GetType() {
	case fdinfo.FdTypes_REG:
		return f.GetReg().GetName()
	case fdinfo.FdTypes_PIPE:
		return fmt.Sprintf("pipe:[%d]", f.GetPipe().GetPipeId())
	case fdinfo.FdTypes_FIFO:
		if r, ok := fx.files[f.GetFifo().GetRegfId()]; ok && r.GetReg() != nil {
			return r.GetReg().GetName()
		}
		return fmt.Sprintf("fifo:[%d]", f.GetFifo().GetPipeId())
	case fdinfo.FdTypes_INETSK:
		return fmt.Sprintf("socket:[%d]", f.GetIsk().GetIno())
	case fdinfo.FdTypes_UNIXSK:
		return fmt.Sprintf("socket:[%d]", f.GetUsk().GetIno())
	case fdinfo.FdTypes_NETLINKSK:
		return fmt.Sprintf("socket:[%d]", f.GetNlsk().GetIno())
	case fdinfo.FdTypes_PACKETSK:
		return "socket:[packet]"
	case fdinfo.FdTypes_MEMFD:
		return "/memfd:" + fx.memfds[uint64(f.GetMemfd().GetInodeId())]
	case fdinfo.FdTypes_TUNF:
		return "/dev/net/tun"
	case fdinfo.FdTypes_EVENTFD, fdinfo.FdTypes_EVENTPOLL, fdinfo.FdTypes_SIGNALFD, fdinfo.FdTypes_TIMERFD,
		fdinfo.FdTypes_INOTIFY, fdinfo.FdTypes_FANOTIFY, fdinfo.FdTypes_BPFMAP:
		return "anon_inode:[" + strings.ToLower(f.GetType().String()) + "]"
	}
	return strings.ToLower(f.GetType().String())
}

// Open flags as CRIU records them (the kernel's O_*).
const (
	openAccMode = unix.O_ACCMODE
	openAppend  = unix.O_APPEND
)

func openMode(flags uint32) string {
	var m string
	switch flags & openAccMode {
	case unix.O_RDONLY:
		m = "r"
	case unix.O_WRONLY:
		m = "w"
	case unix.O_RDWR:
		m = "rw"
	default:
		return ""
	}
	if flags&openAppend != 0 {
		m += "+append"
	}
	return m
}

// readFiles fills in a process's descriptors, cwd and root, and sockets.
func (fx *fileIndex) readFiles(p *Process, opts Options) error {
	c := fx.c
	idsName := fmt.Sprintf("%sids-%d.img", checkpointPrefix, p.PID)
	msg, err := c.firstEntry(idsName, idsImage)
	if err != nil {
		return err
	}
	filesID := msg.(*criu_core.TaskKobjIdsEntry).GetFilesId()
	if !fx.fdinfoPerID {
		filesID = p.PID
	}
	fdName := fmt.Sprintf("%sfdinfo-%d.img", checkpointPrefix, filesID)
	fds, err := c.image(fdName, fdinfoImage)
	if err != nil {
		return err
	}
	for _, m := range fds {
		fd := m.(*fdinfo.FdinfoEntry)
		f := File{Fd: fd.GetFd(), Type: fd.GetType().String(), Path: fx.path(fd.GetId())}
		fe := fx.files[fd.GetId()]
		switch fd.GetType() {
		case fdinfo.FdTypes_REG:
			f.Mode = openMode(fe.GetReg().GetFlags())
		case fdinfo.FdTypes_PIPE:
			f.Mode = openMode(fe.GetPipe().GetFlags())
			f.External = fx.external[f.Path]
		case fdinfo.FdTypes_MEMFD:
			f.Mode = openMode(fe.GetMemfd().GetFlags())
		}
		if sk, ok, err := fx.socket(fd); err != nil {
			return err
		} else if ok {
			f.Detail = sk.describe()
			if opts.Sockets {
				p.Sockets = append(p.Sockets, sk)
			}
		}
		if opts.Files {
			p.Files = append(p.Files, f)
		}
	}
	if !opts.Files {
		return nil
	}
	fsName := fmt.Sprintf("%sfs-%d.img", checkpointPrefix, p.PID)
	msg, err = c.firstEntry(fsName, fsImage)
	if err != nil {
		return err
	}
	fse := msg.(*fs.FsEntry)
	p.Cwd, p.Root = fx.path(fse.GetCwdId()), fx.path(fse.GetRootId())
	return nil
}

// Socket families, types, protocols and TCP states as the kernel numbers
// them.
var (
	families = map[uint32]string{unix.AF_UNIX: "unix", unix.AF_INET: "inet", unix.AF_INET6: "inet6",
		unix.AF_PACKET: "packet", unix.AF_NETLINK: "netlink"}
	sockTypes = map[uint32]string{unix.SOCK_STREAM: "stream", unix.SOCK_DGRAM: "dgram", unix.SOCK_RAW: "raw",
		unix.SOCK_SEQPACKET: "seqpacket", unix.SOCK_RDM: "rdm", unix.SOCK_PACKET: "packet"}
	protocols = map[uint32]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_UDPLITE: "udplite",
		unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_ICMPV6: "icmpv6", unix.IPPROTO_RAW: "raw", unix.IPPROTO_SCTP: "sctp"}
	tcpStates = map[uint32]string{1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
		6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}
)

const (
	tcpEstablished = 1
	tcpClose       = 7
)

func lookup(m map[uint32]string, v uint32) string {
	if s, ok := m[v]; ok {
		return s
	}
	return strconv.FormatUint(uint64(v), 10)
}

// state names a socket's state; datagram sockets that are not connected
// are UNCONN, as ss(8) says.
func state(st, typ uint32) string {
	if st == tcpClose && typ != unix.SOCK_STREAM && typ != unix.SOCK_SEQPACKET {
		return "UNCONN"
	}
	return lookup(tcpStates, st)
}

// socket describes the socket behind a descriptor; ok is false for other
// kinds of files.
func (fx *fileIndex) socket(fd *fdinfo.FdinfoEntry) (Socket, bool, error) {
	f, ok := fx.files[fd.GetId()]
	if !ok {
		return Socket{}, false, nil
	}
	s := Socket{Fd: fd.GetFd()}
	switch fd.GetType() {
	case fdinfo.FdTypes_INETSK:
		sk := f.GetIsk()
		if sk == nil {
			return Socket{}, false, nil
		}
		s.Family, s.Type, s.Proto = lookup(families, sk.GetFamily()), lookup(sockTypes, sk.GetType()), lookup(protocols, sk.GetProto())
		s.State, s.Inode = state(sk.GetState(), sk.GetType()), sk.GetIno()
		s.Local = hostPort(sk.GetSrcAddr(), sk.GetSrcPort())
		if sk.GetDstPort() != 0 {
			s.Remote = hostPort(sk.GetDstAddr(), sk.GetDstPort())
		}
		if err := fx.tcpQueues(&s, sk); err != nil {
			return Socket{}, false, err
		}
	case fdinfo.FdTypes_UNIXSK:
		sk := f.GetUsk()
		if sk == nil {
			return Socket{}, false, nil
		}
		s.Family, s.Type = "unix", lookup(sockTypes, sk.GetType())
		s.State, s.Inode, s.Peer = state(sk.GetState(), sk.GetType()), sk.GetIno(), sk.GetPeer()
		s.Local = unixName(sk)
	case fdinfo.FdTypes_PACKETSK:
		sk := f.GetPsk()
		s.Family, s.Type, s.Proto = "packet", lookup(sockTypes, sk.GetType()), fmt.Sprintf("0x%04x", sk.GetProtocol())
	case fdinfo.FdTypes_NETLINKSK:
		sk := f.GetNlsk()
		s.Family, s.Proto, s.Inode = "netlink", strconv.FormatUint(uint64(sk.GetProtocol()), 10), sk.GetIno()
	default:
		return Socket{}, false, nil
	}
	return s, true, nil
}

// tcpQueues adds the queue lengths of an established TCP connection that
// CRIU dumped (--tcp-established) from tcp-stream-INO.img.
func (fx *fileIndex) tcpQueues(s *Socket, sk *sk_inet.InetSkEntry) error {
	if sk.GetProto() != unix.IPPROTO_TCP || sk.GetState() != tcpEstablished {
		return nil
	}
	name := fmt.Sprintf("%stcp-stream-%x.img", checkpointPrefix, sk.GetIno())
	if !fx.c.has(name) {
		return nil
	}
	msg, err := fx.c.firstEntry(name, tcpStreamImage)
	if err != nil {
		return err
	}
	ts := msg.(*tcp_stream.TcpStreamEntry)
	in, out := ts.GetInqLen(), ts.GetOutqLen()
	s.InQueue, s.OutQueue = &in, &out
	return nil
}

// hostPort formats an address CRIU stored as 32-bit words in memory order.
func hostPort(words []uint32, port uint32) string {
	b := make([]byte, 0, 16)
	for _, w := range words {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	p := strconv.FormatUint(uint64(port), 10)
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b)).String() + ":" + p
	case 16:
		return "[" + netip.AddrFrom16([16]byte(b)).String() + "]:" + p
	}
	return "?:" + p
}

// unixName is a unix socket's address: a path, @name for the abstract
// namespace, or "" when unnamed.
func unixName(sk *sk_unix.UnixSkEntry) string {
	n := sk.GetName()
	switch {
	case len(n) == 0:
		return ""
	case n[0] == 0:
		return "@" + string(bytes.TrimRight(n[1:], "\x00"))
	}
	name := string(bytes.TrimRight(n, "\x00"))
	if d := sk.GetNameDir(); d != "" && !strings.HasPrefix(name, "/") {
		name = strings.TrimSuffix(d, "/") + "/" + name
	}
	return name
}

// describe is a one-line summary of the socket.
func (s Socket) describe() string {
	kind := s.Family
	if s.Proto != "" && (s.Family == "inet" || s.Family == "inet6") {
		kind = s.Proto
	} else if s.Type != "" {
		kind += " " + s.Type
	}
	parts := []string{kind}
	if s.State != "" {
		parts = append(parts, s.State)
	}
	switch {
	case s.Family == "unix":
		parts = append(parts, firstOf(s.Local, "unnamed"))
		if s.Peer != 0 {
			parts = append(parts, fmt.Sprintf("-> socket:[%d]", s.Peer))
		}
	case s.Local != "":
		parts = append(parts, s.Local)
		if s.Remote != "" {
			parts = append(parts, "-> "+s.Remote)
		}
	}
	return strings.Join(parts, " ")
}

// splitNul splits a NUL-separated string area; a trailing NUL ends the
// last string rather than starting an empty one.
func splitNul(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
