package dump

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
)

// fdInfo is one open descriptor of a process in the container.
type fdInfo struct {
	pid, fd int
	target  string
	flags   int
	mntID   int
	fsType  int64 // statfs f_type of what a path-like target lies on
}

// fdScope is what tells a descriptor inside the container from one that
// leads outside it.
type fdScope struct {
	// containerMounts are the mount IDs of every mount namespace of the
	// container: a process may have made one of its own.
	containerMounts map[int]bool
	// hostMounts are the mount IDs of crtool's (the host's) mount namespace.
	hostMounts map[int]bool
	// pipesOutside are the pipes ("pipe:[N]") that a process outside the
	// container holds too.
	pipesOutside map[string]bool
}

// externalFiles finds descriptors that lead outside the container: pipes
// whose other end a process outside holds (stdio connected to a supervisor
// or a shell) and files on mounts the container does not have (a log file
// on the host, the host's /dev/null). CRIU needs the files named as external
// at dump, and restore hands it a replacement for each. A pipe with one end
// inside that nobody outside holds (its other end closed, or in flight in an
// SCM_RIGHTS message) is the container's own, and so are files on the
// kernel's internal mounts (memfds, shared anonymous memory): CRIU dumps
// those itself.
func externalFiles(fds []fdInfo, scope fdScope) ([]format.ExternalFile, error) {
	type pipeEnds struct {
		read, write bool
		users       []format.FdRef
		flags       int
	}
	pipes := map[string]*pipeEnds{}
	var pipeOrder []string
	var files []format.ExternalFile
	fileIdx := map[string]int{}
	{
		for _, f := range fds {
			switch {
			case strings.HasPrefix(f.target, "pipe:["):
				p := pipes[f.target]
				if p == nil {
					p = &pipeEnds{flags: f.flags}
					pipes[f.target] = p
					pipeOrder = append(pipeOrder, f.target)
				}
				if f.flags&unix.O_ACCMODE == unix.O_WRONLY {
					p.write = true
				} else {
					p.read = true
				}
				p.users = append(p.users, format.FdRef{PID: f.pid, Fd: f.fd})
			case strings.HasPrefix(f.target, "/"):
				if scope.containerMounts[f.mntID] || internalMount(f, scope.hostMounts) {
					continue
				}
				if strings.HasSuffix(f.target, " (deleted)") {
					return nil, fmt.Errorf("pid %d fd %d: %w: it holds %s, a deleted file outside the container", f.pid, f.fd, ErrUnsupported, f.target)
				}
				var st unix.Stat_t
				if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", f.pid, f.fd), &st); err != nil {
					return nil, fmt.Errorf("stat fd %d of pid %d: %w", f.fd, f.pid, err)
				}
				if isTerminal(st) {
					return nil, fmt.Errorf("pid %d fd %d: %w: it is connected to the terminal %s; start the container with its stdio on a file, a pipe or /dev/null", f.pid, f.fd, ErrUnsupported, f.target)
				}
				key := fmt.Sprintf("file[%x:%x]", f.mntID, st.Ino)
				if i, ok := fileIdx[key]; ok {
					files[i].Users = append(files[i].Users, format.FdRef{PID: f.pid, Fd: f.fd})
					continue
				}
				fileIdx[key] = len(files)
				files = append(files, format.ExternalFile{
					Key: key, Kind: format.FileReg, Path: f.target, Flags: f.flags,
					Users: []format.FdRef{{PID: f.pid, Fd: f.fd}},
				})
			}
		}
	}
	var out []format.ExternalFile
	for _, k := range pipeOrder {
		p := pipes[k]
		if p.read && p.write || !scope.pipesOutside[k] {
			continue // the container's own: CRIU restores it itself
		}
		out = append(out, format.ExternalFile{Key: k, Kind: format.FilePipe, Flags: p.flags, Users: p.users})
	}
	out = append(out, files...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// internalMount reports whether f lies on a mount that no mount namespace
// shows: the kernel's internal tmpfs behind memfds, MAP_SHARED anonymous
// memory and SysV shared memory, or its hugetlbfs twin.
func internalMount(f fdInfo, hostMounts map[int]bool) bool {
	return !hostMounts[f.mntID] && (f.fsType == unix.TMPFS_MAGIC || f.fsType == unix.HUGETLBFS_MAGIC)
}

// isTerminal reports whether st is a tty, pty or console device, which
// crtool cannot hand back to a restored container.
func isTerminal(st unix.Stat_t) bool {
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return false
	}
	major := unix.Major(uint64(st.Rdev))
	return major == 4 || major == 5 || (major >= 136 && major <= 143)
}

// scanFds lists the descriptors of all pids.
func scanFds(pids []int) ([]fdInfo, error) {
	var all []fdInfo
	for _, pid := range pids {
		fds, err := openFds(pid)
		if err != nil {
			return nil, err
		}
		all = append(all, fds...)
	}
	return all, nil
}

// openFds lists the descriptors of pid.
func openFds(pid int) ([]fdInfo, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil // exited meanwhile
		}
		return nil, fmt.Errorf("list descriptors of pid %d: %w", pid, err)
	}
	var out []fdInfo
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
		if err != nil {
			continue
		}
		f := fdInfo{pid: pid, fd: fd, target: target}
		if strings.HasPrefix(target, "/") {
			var st unix.Statfs_t
			if err := unix.Statfs(dir+"/"+e.Name(), &st); err == nil {
				f.fsType = st.Type
			}
		}
		sc := bufio.NewScanner(bytes.NewReader(info))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			v = strings.TrimSpace(v)
			switch k {
			case "flags":
				n, _ := strconv.ParseInt(v, 8, 64)
				f.flags = int(n)
			case "mnt_id":
				f.mntID, _ = strconv.Atoi(v)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// pipesHeldOutside returns which of pipes ("pipe:[N]") a process that is
// not in inside (the container's PIDs) holds open too.
func pipesHeldOutside(pipes map[string]bool, inside map[int]bool) (map[string]bool, error) {
	held := map[string]bool{}
	if len(pipes) == 0 {
		return held, nil
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || inside[pid] {
			continue
		}
		dir := "/proc/" + p.Name() + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // exited, or a kernel thread
		}
		for _, fd := range fds {
			if target, err := os.Readlink(dir + "/" + fd.Name()); err == nil && pipes[target] {
				held[target] = true
			}
		}
	}
	return held, nil
}

// mountIDsOf collects the mount IDs of every mount namespace the
// processes pids are in.
func mountIDsOf(pids []int) (map[int]bool, error) {
	ids := map[int]bool{}
	seen := map[uint64]bool{}
	for _, pid := range pids {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/mnt", pid), &st); err != nil {
			continue // exited meanwhile
		}
		if seen[st.Ino] {
			continue
		}
		seen[st.Ino] = true
		ms, err := mountinfo.PidMountInfo(pid)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("mounts of pid %d: %w", pid, err)
		}
		for _, m := range ms {
			ids[m.ID] = true
		}
	}
	return ids, nil
}
