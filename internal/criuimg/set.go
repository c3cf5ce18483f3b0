package criuimg

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/cgroup"
	criu_core "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fdinfo"
	criufs "github.com/checkpoint-restore/go-criu/v7/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/mnt"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/internal/errdefs"
)

var (
	// ErrCorrupt means an image does not decode.
	ErrCorrupt = errdefs.New(errdefs.ErrInvalidArchive, "corrupt CRIU image")
	// ErrMissing means an image the question needs is not in the dump.
	ErrMissing = errdefs.New(errdefs.ErrInvalidArchive, "missing from the checkpoint")
	// ErrTooLarge means an image is larger than MaxSize.
	ErrTooLarge = errdefs.New(errdefs.ErrInvalidArchive, "too large to decode")
)

// MaxSize bounds the images Dir reads into memory.
const MaxSize = 64 << 20

// Error names the image a problem was found in.
type Error struct {
	Image string // as the Set's prefix makes it: "checkpoint/core-1.img"
	Err   error
}

func (e *Error) Error() string { return e.Image + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Source gives the content of one dump's images by file name
// ("pstree.img"); an image that is not there is fs.ErrNotExist.
type Source interface {
	ReadImage(name string) ([]byte, error)
}

// Dir is the Source of an image directory.
type Dir string

// ReadImage reads the image name from the directory, at most MaxSize bytes.
func (d Dir) ReadImage(name string) ([]byte, error) {
	f, err := os.Open(filepath.Join(string(d), name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d MiB", ErrTooLarge, MaxSize>>20)
	}
	return data, nil
}

// Set is the images of one dump. Each image is decoded once, when a
// question first needs it.
type Set struct {
	src     Source
	prefix  string
	decoded map[string][]proto.Message
}

// New returns the Set of src; prefix goes before image names in errors
// ("checkpoint/" for an archive's images).
func New(src Source, prefix string) *Set {
	return &Set{src: src, prefix: prefix, decoded: map[string][]proto.Message{}}
}

func (s *Set) fail(name string, err error) error {
	return &Error{Image: s.prefix + name, Err: err}
}

// Corruptf is an error about the image name that matches ErrCorrupt.
func (s *Set) Corruptf(name, format string, args ...any) error {
	return s.fail(name, fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...)))
}

// Has reports whether the dump has the image name.
func (s *Set) Has(name string) bool {
	if _, ok := s.decoded[name]; ok {
		return true
	}
	_, err := s.src.ReadImage(name)
	return !errors.Is(err, fs.ErrNotExist)
}

// Decode returns the entries of the image name, of kind.
func (s *Set) Decode(name string, kind Kind) ([]proto.Message, error) {
	if msgs, ok := s.decoded[name]; ok {
		return msgs, nil
	}
	data, err := s.src.ReadImage(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, s.fail(name, ErrMissing)
	}
	if err != nil {
		return nil, s.fail(name, err)
	}
	msgs, err := Decode(data, kind)
	if err != nil {
		return nil, s.fail(name, fmt.Errorf("%w: %w", ErrCorrupt, err))
	}
	s.decoded[name] = msgs
	return msgs, nil
}

// First returns the first entry of an image that must have one.
func (s *Set) First(name string, kind Kind) (proto.Message, error) {
	msgs, err := s.Decode(name, kind)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, s.Corruptf(name, "no entry")
	}
	return msgs[0], nil
}

// Image names.
const (
	pstreeName = "pstree.img"
	cgroupName = "cgroup.img"
	filesName  = "files.img"
)

// CoreName is the name of the core image of task pid.
func CoreName(pid uint32) string { return fmt.Sprintf("core-%d.img", pid) }

// Tree is the dumped process tree, parents first, as pstree.img has it.
// Every pid appears once; the first is the root task.
func (s *Set) Tree() ([]*pstree.PstreeEntry, error) {
	msgs, err := s.Decode(pstreeName, Pstree)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, s.Corruptf(pstreeName, "no entry")
	}
	out := make([]*pstree.PstreeEntry, 0, len(msgs))
	seen := map[uint32]bool{}
	for _, m := range msgs {
		e := m.(*pstree.PstreeEntry)
		if seen[e.GetPid()] {
			return nil, s.Corruptf(pstreeName, "pid %d appears twice", e.GetPid())
		}
		seen[e.GetPid()] = true
		out = append(out, e)
	}
	return out, nil
}

// RootPID is the pid, inside the container, of the dumped tree's root.
func (s *Set) RootPID() (uint32, error) {
	tree, err := s.Tree()
	if err != nil {
		return 0, err
	}
	return tree[0].GetPid(), nil
}

// Core is the core image of task pid.
func (s *Set) Core(pid uint32) (*criu_core.CoreEntry, error) {
	msg, err := s.First(CoreName(pid), Core)
	if err != nil {
		return nil, err
	}
	return msg.(*criu_core.CoreEntry), nil
}

// rootCore is the root task's pid and core image.
func (s *Set) rootCore() (uint32, *criu_core.CoreEntry, error) {
	pid, err := s.RootPID()
	if err != nil {
		return 0, nil, err
	}
	core, err := s.Core(pid)
	return pid, core, err
}

// Cgroups are the cgroups of the root task: hierarchy (a v1 controller
// list, "name=systemd", or "" for cgroup v2) to path.
func (s *Set) Cgroups() (map[string]string, error) {
	pid, core, err := s.rootCore()
	if err != nil {
		return nil, err
	}
	// CRIU 3.x and later keep the set per thread.
	set := core.GetThreadCore().GetCgSet()
	if set == 0 {
		set = core.GetTc().GetCgSet()
	}
	msg, err := s.First(cgroupName, Cgroup)
	if err != nil {
		return nil, err
	}
	for _, cs := range msg.(*cgroup.CgroupEntry).GetSets() {
		if cs.GetId() != set {
			continue
		}
		paths := map[string]string{}
		for _, c := range cs.GetCtls() {
			paths[c.GetName()] = c.GetPath()
		}
		return paths, nil
	}
	return nil, s.Corruptf(cgroupName, "no cgroup set %d for pid %d", set, pid)
}

// Files maps file ids to the entries of files.img.
func (s *Set) Files() (map[uint32]*fdinfo.FileEntry, error) {
	msgs, err := s.Decode(filesName, Files)
	if err != nil {
		return nil, err
	}
	out := make(map[uint32]*fdinfo.FileEntry, len(msgs))
	for _, m := range msgs {
		f := m.(*fdinfo.FileEntry)
		out[f.GetId()] = f
	}
	return out, nil
}

// RootMode is the mode CRIU recorded for the root task's root directory,
// which it checks on restore.
func (s *Set) RootMode() (uint32, error) {
	pid, err := s.RootPID()
	if err != nil {
		return 0, err
	}
	name := fmt.Sprintf("fs-%d.img", pid)
	msg, err := s.First(name, Fs)
	if err != nil {
		return 0, err
	}
	rootID := msg.(*criufs.FsEntry).GetRootId()
	files, err := s.Files()
	if err != nil {
		return 0, err
	}
	if fe, ok := files[rootID]; ok && fe.GetReg() != nil {
		return fe.GetReg().GetMode(), nil
	}
	return 0, s.Corruptf(filesName, "does not describe the root directory (id %d)", rootID)
}

// MountNamespace is one mountpoints-*.img: a mount namespace of the dump.
type MountNamespace struct {
	Image  string
	Mounts []*mnt.MntEntry
	// Root is the mount at "/", nil when there is none.
	Root *mnt.MntEntry
}

// MountNamespaces decodes the mount images names lists (the dump's
// mountpoints-*.img), in that order.
func (s *Set) MountNamespaces(names []string) ([]MountNamespace, error) {
	var out []MountNamespace
	for _, name := range names {
		msgs, err := s.Decode(name, Mounts)
		if err != nil {
			return nil, err
		}
		ns := MountNamespace{Image: name}
		for _, m := range msgs {
			me := m.(*mnt.MntEntry)
			ns.Mounts = append(ns.Mounts, me)
			if me.GetMountpoint() == "/" {
				ns.Root = me
			}
		}
		out = append(out, ns)
	}
	return out, nil
}

// External are the mounts CRIU recorded as external, each once by its key.
func External(nss []MountNamespace) []*mnt.MntEntry {
	var out []*mnt.MntEntry
	seen := map[string]bool{}
	for _, ns := range nss {
		for _, me := range ns.Mounts {
			if k := me.GetExtKey(); k != "" && !seen[k] {
				seen[k] = true
				out = append(out, me)
			}
		}
	}
	return out
}

// DumpStats are CRIU's statistics of the dump (the image, in an archive,
// is stats-dump at its top); nil when the image holds none.
func (s *Set) DumpStats(name string) (*stats.DumpStatsEntry, error) {
	msg, err := s.First(name, Stats)
	if err != nil {
		return nil, err
	}
	return msg.(*stats.StatsEntry).GetDump(), nil
}

// RestoreStats are CRIU's statistics of a restore (stats-restore).
func (s *Set) RestoreStats(name string) (*stats.RestoreStatsEntry, error) {
	msg, err := s.First(name, Stats)
	if err != nil {
		return nil, err
	}
	return msg.(*stats.StatsEntry).GetRestore(), nil
}

// FPU is the x86 extended state of task pid's main thread as CRIU saved
// it: XstateBV is XSAVE's XSTATE_BV, the state components in use; ok is
// false when the image has no XSAVE area (another architecture, or a CPU
// without XSAVE).
func (s *Set) FPU(pid uint32) (xstateBV uint64, ok bool, err error) {
	core, err := s.Core(pid)
	if err != nil {
		return 0, false, err
	}
	xs := core.GetThreadInfo().GetFpregs().GetXsave()
	if xs == nil || xs.XstateBv == nil {
		return 0, false, nil
	}
	return xs.GetXstateBv(), true, nil
}

// Process is one task of the tree with what its core image says.
type Process struct {
	PID, PPID, PGID, SID uint32
	Threads              []uint32
	Comm                 string
	// State is CRIU's TASK_* value: 1 alive, 2 dead, 3 stopped, 6 zombie.
	State    uint32
	UID, GID *uint32
}

// Processes lists the tasks of the tree, in its order, with their core
// images.
func (s *Set) Processes() ([]Process, error) {
	tree, err := s.Tree()
	if err != nil {
		return nil, err
	}
	out := make([]Process, 0, len(tree))
	for _, e := range tree {
		p, err := s.Process(e)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Process is the task e of the tree with what its core image says.
func (s *Set) Process(e *pstree.PstreeEntry) (Process, error) {
	p := Process{PID: e.GetPid(), PPID: e.GetPpid(), PGID: e.GetPgid(), SID: e.GetSid(), Threads: e.GetThreads()}
	core, err := s.Core(p.PID)
	if err != nil {
		return p, err
	}
	tc := core.GetTc()
	if tc == nil {
		return p, s.Corruptf(CoreName(p.PID), "no task core")
	}
	p.Comm, p.State = tc.GetComm(), tc.GetTaskState()
	if cr := core.GetThreadCore().GetCreds(); cr != nil {
		uid, gid := cr.GetUid(), cr.GetGid()
		p.UID, p.GID = &uid, &gid
	}
	return p, nil
}

// PIDList names the tree's first pids for messages: "pids 1, 6".
func PIDList(tree []*pstree.PstreeEntry) string {
	var ids []string
	for _, e := range tree {
		ids = append(ids, strconv.Itoa(int(e.GetPid())))
		if len(ids) == 20 {
			ids = append(ids, "...")
			break
		}
	}
	return "pids " + strings.Join(ids, ", ")
}
