package dump

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
)

// fdInfo is one open descriptor of a process in the container.
type fdInfo struct {
	pid, fd int
	target  string
	flags   int
	mntID   int
}

// externalFiles finds descriptors that lead outside the container: pipes
// with only one end inside (stdio connected to a supervisor or a shell) and
// files on mounts the container does not have (a log file on the host,
// the host's /dev/null). CRIU needs the files named as external at dump, and
// restore hands it a replacement for each.
func externalFiles(fds []fdInfo, mountIDs map[int]bool) ([]format.ExternalFile, error) {
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
				if mountIDs[f.mntID] {
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
		if p.read && p.write {
			continue // both ends inside: CRIU restores the pair itself
		}
		out = append(out, format.ExternalFile{Key: k, Kind: format.FilePipe, Flags: p.flags, Users: p.users})
	}
	out = append(out, files...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
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
