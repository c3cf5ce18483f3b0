package inspect

import (
	"fmt"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/fdinfo"
	"golang.org/x/sys/unix"
)

// Status bits of a VMA in mm-*.img (CRIU's VMA_*).
const (
	vmaRegular     = 1 << 0
	vmaStack       = 1 << 1
	vmaVsyscall    = 1 << 2
	vmaVdso        = 1 << 3
	vmaHeap        = 1 << 5
	vmaFilePrivate = 1 << 6
	vmaFileShared  = 1 << 7
	vmaAnonShared  = 1 << 8
	vmaSysVIPC     = 1 << 10
	vmaSocket      = 1 << 11
	vmaVvar        = 1 << 12
	vmaAIORing     = 1 << 13
	vmaMemfd       = 1 << 14
)

// memory describes a process's mappings; nil when the checkpoint has no
// memory images for it.
func memory(c *contents, fx *fileIndex, pid uint32) (*Memory, error) {
	pm, ok, err := c.procMem(pid)
	if err != nil || !ok {
		return nil, err
	}
	ps := uint64(c.pageSize)
	mem := &Memory{Exe: fx.path(pm.mm.GetExeFileId()), PagesImage: pm.pages, Mappings: []Mapping{}}
	for _, r := range pm.runs {
		if r.present {
			mem.Dumped += r.nr * ps
		}
	}
	var prevEnd uint64
	for i, v := range pm.mm.GetVmas() {
		start, end := v.GetStart(), v.GetEnd()
		switch {
		case end < start:
			return nil, corruptImage(fmt.Sprintf("%smm-%d.img", checkpointPrefix, pid), "mapping ends at 0x%x before its start 0x%x", end, start)
		case i > 0 && start < prevEnd:
			// CRIU writes mappings sorted, as the kernel keeps them.
			return nil, corruptImage(fmt.Sprintf("%smm-%d.img", checkpointPrefix, pid), "mapping at 0x%x overlaps the one before", start)
		}
		prevEnd = end
		m := Mapping{
			Start:  fmt.Sprintf("0x%x", start),
			End:    fmt.Sprintf("0x%x", end),
			Size:   end - start,
			Prot:   protString(v.GetProt(), v.GetFlags()),
			Name:   fx.vmaName(v.GetStatus(), v.GetShmid()),
			Dumped: pm.dumped(start, end, ps),
		}
		if v.GetStatus()&(vmaFilePrivate|vmaFileShared) != 0 {
			m.Offset = v.GetPgoff()
		}
		if m.Name == "" && (v.GetFlags()&unix.MAP_GROWSDOWN != 0 || start <= pm.mm.GetMmStartStack() && pm.mm.GetMmStartStack() < end) {
			m.Name = "[stack]" // how the kernel names the main thread's stack
		}
		mem.Mapped += m.Size
		mem.Mappings = append(mem.Mappings, m)
	}
	return mem, nil
}

// protString renders protection and sharing like /proc/PID/maps.
func protString(prot, flags uint32) string {
	b := []byte("---p")
	if prot&unix.PROT_READ != 0 {
		b[0] = 'r'
	}
	if prot&unix.PROT_WRITE != 0 {
		b[1] = 'w'
	}
	if prot&unix.PROT_EXEC != 0 {
		b[2] = 'x'
	}
	if flags&unix.MAP_SHARED != 0 {
		b[3] = 's'
	}
	return string(b)
}

// vmaName names what a mapping maps, as /proc/PID/maps would.
func (fx *fileIndex) vmaName(status uint32, shmid uint64) string {
	switch {
	case status&vmaMemfd != 0:
		if f, ok := fx.files[uint32(shmid)]; ok && f.GetType() == fdinfo.FdTypes_MEMFD {
			return "/memfd:" + fx.memfds[uint64(f.GetMemfd().GetInodeId())]
		}
		return "/memfd:"
	case status&(vmaFilePrivate|vmaFileShared) != 0:
		return fx.path(uint32(shmid))
	case status&vmaHeap != 0:
		return "[heap]"
	case status&vmaStack != 0:
		return "[stack]"
	case status&vmaVdso != 0:
		return "[vdso]"
	case status&vmaVvar != 0:
		return "[vvar]"
	case status&vmaVsyscall != 0:
		return "[vsyscall]"
	case status&vmaSysVIPC != 0:
		return "[sysvipc]"
	case status&vmaAIORing != 0:
		return "[aio]"
	case status&vmaSocket != 0:
		return "[packet socket]"
	case status&vmaAnonShared != 0:
		return "[shmem]"
	case status&vmaRegular == 0:
		return "[not dumped]"
	}
	return ""
}
