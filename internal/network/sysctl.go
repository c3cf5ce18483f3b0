package network

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/safefs"
)

// Sysctls are captured by reading all of /proc/sys/net/ipv4 and
// /proc/sys/net/ipv6 twice: in the captured namespace and in a scratch
// namespace created for the comparison. That is about 500 files for a
// namespace with only lo plus about 130 per interface, 10 to 15 ms for lo, a
// veth and a macvlan on a 2-CPU VM, most of a capture. A curated key list
// would be cheaper but silently miss whatever the container tuned outside
// it; the scratch namespace gives the real defaults of this host, which
// depend on the host's own settings (net.core.devconf_inherit_init_net).

const sysctlRoot = "/proc/sys"

var sysctlTrees = []string{"/proc/sys/net/ipv4", "/proc/sys/net/ipv6"}

// derivedSysctls are per-interface keys the kernel sets from other state
// (net.ipv6.conf.IF.mtu follows the link MTU); replaying them is pointless
// and comparing them with a default is wrong.
var derivedSysctls = map[string]bool{
	"net.ipv6.conf.*.mtu": true,
}

// alwaysSysctls are recorded whatever the scratch namespace says: a new
// namespace inherits IPv4 settings from the host's (devconf_inherit_init_net
// 0), so a host that forwards hides a container's forwarding, which a host
// without it would then not get back.
var alwaysSysctls = map[string]bool{
	"net.ipv4.ip_forward":        true,
	"net.ipv4.conf.*.forwarding": true,
	"net.ipv6.conf.*.forwarding": true,
}

func always(k string, sk sysctlKey) bool {
	if sk.perDevice() {
		return alwaysSysctls[sk.withDev("*")]
	}
	return alwaysSysctls[k]
}

// sysctlKey is a parsed key. For per-device keys (net.ipv4.conf.eth0.x,
// net.ipv6.neigh.eth0.x) dev is the device directory: an interface name,
// "all" or "default".
type sysctlKey struct {
	proto, group, dev, name string
}

func parseSysctlKey(key string) sysctlKey {
	parts := strings.Split(key, ".")
	if len(parts) == 5 && parts[0] == "net" && (parts[2] == "conf" || parts[2] == "neigh") {
		return sysctlKey{proto: parts[1], group: parts[2], dev: strings.ReplaceAll(parts[3], "/", "."), name: parts[4]}
	}
	return sysctlKey{}
}

func (k sysctlKey) perDevice() bool { return k.dev != "" }

func (k sysctlKey) withDev(dev string) string {
	return strings.Join([]string{"net", k.proto, k.group, strings.ReplaceAll(dev, ".", "/"), k.name}, ".")
}

// sysctlPath maps sysctl(8) notation to the /proc/sys file: dots separate
// directories, slashes stand for dots inside a name.
func sysctlPath(key string) string {
	parts := strings.Split(key, ".")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, "/", ".")
	}
	return filepath.Join(sysctlRoot, filepath.Join(parts...))
}

func sysctlKeyOf(path string) string {
	rel := strings.TrimPrefix(path, sysctlRoot+"/")
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, ".", "/")
	}
	return strings.Join(parts, ".")
}

// readSysctls reads every readable value under the sysctl trees of the
// calling thread's network namespace. Syscalls are the cost here (about a
// thousand files), hence openat relative to the directory and one read per
// value instead of os.ReadFile.
func readSysctls(trees ...string) (map[string]string, error) {
	out := make(map[string]string, 1024)
	buf := make([]byte, 4096)
	var walk func(dirfd int, dir string) error
	walk = func(dirfd int, dir string) error {
		entries, err := readDirNames(dirfd)
		if gone(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		for _, e := range entries {
			p := dir + "/" + e.name
			if e.dir {
				fd, err := unix.Openat(dirfd, e.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if gone(err) {
					continue
				}
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				err = walk(fd, p)
				unix.Close(fd)
				if err != nil {
					return err
				}
				continue
			}
			// Write-only (route/flush) and erroring (unset stable_secret)
			// entries carry no state.
			if v, ok := readSysctlAt(dirfd, e.name, &buf); ok {
				out[sysctlKeyOf(p)] = v
			}
		}
		return nil
	}
	for _, t := range trees {
		fd, err := unix.Open(t, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		err = walk(fd, t)
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// gone reports a directory of an interface deleted during the walk.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

type dirEntry struct {
	name string
	dir  bool
}

func readDirNames(dirfd int) ([]dirEntry, error) {
	var out []dirEntry
	buf := make([]byte, 16384)
	for {
		n, err := unix.Getdents(dirfd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(b[16]) | int(b[17])<<8
			typ := b[18]
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				out = append(out, dirEntry{name: s, dir: typ == unix.DT_DIR})
			}
			b = b[reclen:]
		}
	}
}

// readSysctlAt reads one value. Sysctl handlers produce the whole value on
// the first read, so a read shorter than the buffer is the end.
func readSysctlAt(dirfd int, name string, buf *[]byte) (string, bool) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false
	}
	defer unix.Close(fd)
	n := 0
	for {
		m, err := unix.Read(fd, (*buf)[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", false
		}
		n += m
		if m == 0 || n < len(*buf) {
			break
		}
		*buf = append(*buf, make([]byte, len(*buf))...)
	}
	return strings.TrimSuffix(string((*buf)[:n]), "\n"), true
}

// captureSysctls returns the values in ns that differ from a fresh
// namespace, restricted to per-interface keys of the given links.
func captureSysctls(ns netns.NsHandle, links []string) (map[string]string, error) {
	// Reading is syscall bound: the defaults are read on a thread of their
	// own meanwhile. (Splitting the namespace's trees over more threads
	// measured no faster on 2 CPUs.)
	type result struct {
		m   map[string]string
		err error
	}
	fresh := make(chan result, 1)
	go func() {
		var r result
		r.err = onThread(func() error {
			// The scratch namespace is created from crtool's own namespace,
			// like the one Replay fills: with
			// net.core.devconf_inherit_init_net=3 a namespace inherits from
			// its creator, so creating it from inside the captured one would
			// hide the differences. It goes away when the thread leaves it.
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("create scratch namespace: %w", err)
			}
			var err error
			if r.m, err = readSysctls(sysctlTrees...); err != nil {
				return fmt.Errorf("read defaults: %w", err)
			}
			return nil
		})
		fresh <- r
	}()
	var cur map[string]string
	err := inNetns(ns, func() error {
		var err error
		cur, err = readSysctls(sysctlTrees...)
		return err
	})
	f := <-fresh
	if err := errors.Join(err, f.err); err != nil {
		return nil, err
	}
	diff := diffSysctls(f.m, cur, links)
	// Values the kernel shows but refuses to take cannot be replayed. The
	// check needs the namespace: the modes are per namespace.
	writable := map[string]bool{}
	err = inNetns(ns, func() error {
		for k := range diff {
			var st unix.Stat_t
			writable[k] = unix.Stat(sysctlPath(k), &st) == nil && st.Mode&0o200 != 0
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for k := range diff {
		if !writable[k] {
			delete(diff, k)
		}
	}
	return diff, nil
}

// diffSysctls picks the values of cur worth replaying into a namespace
// whose values are fresh.
func diffSysctls(fresh, cur map[string]string, links []string) map[string]string {
	out := map[string]string{}
	// A changed "all" or "default" value reaches interfaces when it is
	// written (forwarding, disable_ipv6) or when they are created; an
	// interface whose value equals the fresh default must then be written
	// explicitly after it, or it would end up with the changed value.
	touched := map[string]bool{}
	for k, v := range cur {
		sk := parseSysctlKey(k)
		if sk.perDevice() && sk.dev != "all" && sk.dev != "default" {
			continue
		}
		if f, ok := fresh[k]; ok && (f != v || always(k, sk)) {
			out[k] = v
			if sk.perDevice() && f != v {
				touched[sk.withDev("*")] = true
			}
		}
	}
	for k, v := range cur {
		sk := parseSysctlKey(k)
		if !sk.perDevice() || sk.dev == "all" || sk.dev == "default" || !slices.Contains(links, sk.dev) {
			continue
		}
		generic := sk.withDev("*")
		if derivedSysctls[generic] {
			continue
		}
		// A fresh lo is the one device a scratch namespace has.
		ref := sk.withDev("default")
		if sk.dev == "lo" {
			ref = k
		}
		f, ok := fresh[ref]
		if !ok {
			continue
		}
		if f != v || touched[generic] || always(k, sk) {
			out[k] = v
		}
	}
	return out
}

// sysctlRank orders writes: plain keys, then "all" (whose writes propagate
// to every interface), then "default", then single interfaces, so that the
// most specific value is written last.
func sysctlRank(key string) int {
	sk := parseSysctlKey(key)
	switch {
	case !sk.perDevice():
		return 0
	case sk.dev == "all":
		return 1
	case sk.dev == "default":
		return 2
	}
	return 3
}

// writeSysctls writes the keys of m selected by want, in rank order, inside
// ns. The keys come from an archive: each is checked against
// format.CheckSysctlKey first, ns must not be crtool's own namespace, and
// every file is opened one component at a time below /proc/sys, never
// through a symlink, so that no key reaches a file outside the namespace's
// net.* tree.
func writeSysctls(ns netns.NsHandle, m map[string]string, want func(rank int) bool) error {
	var keys []string
	for k := range m {
		if want(sysctlRank(k)) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if err := format.CheckSysctlKey(k); err != nil {
			return errdefs.Newf(errdefs.ErrInvalidArchive, "%w", err)
		}
		if err := format.CheckSysctlValue(k, m[k]); err != nil {
			return errdefs.Newf(errdefs.ErrInvalidArchive, "%w", err)
		}
	}
	if err := notOwnNetns(ns); err != nil {
		return err
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, rj := sysctlRank(keys[i]), sysctlRank(keys[j])
		if ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	return inNetns(ns, func() error {
		// /proc/sys shows the net.* entries of the namespace of the
		// thread that looks them up: this one.
		root, err := openSysctlRoot(sysctlRoot)
		if err != nil {
			return err
		}
		defer unix.Close(root)
		for _, k := range keys {
			if err := writeSysctlAt(root, k, m[k]); err != nil {
				return fmt.Errorf("replay sysctl %s=%q: %w", k, m[k], err)
			}
		}
		return nil
	})
}

// notOwnNetns refuses to replay into crtool's own network namespace, where
// the archive's net.* values would change the host's network.
func notOwnNetns(ns netns.NsHandle) error {
	var own, target unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		return fmt.Errorf("stat own network namespace: %w", err)
	}
	if err := unix.Fstat(int(ns), &target); err != nil {
		return fmt.Errorf("stat network namespace: %w", err)
	}
	if own.Dev == target.Dev && own.Ino == target.Ino {
		return errdefs.Newf(errdefs.ErrUsage, "refusing to write the archive's network.sysctls into the host's network namespace")
	}
	return nil
}

// openSysctlRoot opens dir, which must be a procfs directory: a file
// system mounted over /proc/sys would take the writes elsewhere.
func openSysctlRoot(dir string) (int, error) {
	fd, err := safefs.OpenDir(dir)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", dir, err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("statfs %s: %w", dir, err)
	}
	if fs.Type != unix.PROC_SUPER_MAGIC {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not procfs", dir)
	}
	return fd, nil
}

// writeSysctlAt writes value to the sysctl key below root (an open
// /proc/sys), one component at a time without following symlinks, into a
// regular file only.
func writeSysctlAt(root int, key, value string) error {
	if err := format.CheckSysctlKey(key); err != nil {
		return err
	}
	rel := strings.TrimPrefix(sysctlPath(key), sysctlRoot+"/")
	if err := safefs.CheckClean(rel); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	dir, base, err := safefs.OpenParent(root, rel, nil)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	fd, err := safefs.OpenAt(dir, base, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%w: %s is not a regular file", safefs.ErrUnsafe, rel)
	}
	_, err = unix.Write(fd, []byte(value))
	return err
}
