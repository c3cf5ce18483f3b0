// Package trust decides which of an archive's requests reach the host: restore acts as root on what crtool.json, config.dump, spec.dump and CRIU's images say, so every host resource they name is checked against what the operator allowed before anything is done.
package trust

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/criuimg"
	"github.com/crtool/crtool/internal/errdefs"
	"github.com/crtool/crtool/internal/safefs"
)

// Policy is what the operator allows a restored container beyond its own
// namespaces and root filesystem.
type Policy struct {
	// AllowHostNamespaces lets the restored tree share the host's pid,
	// mount, network, UTS or IPC namespace when its images say so.
	AllowHostNamespaces bool
	// HostPaths are host files and directories the operator hands to the
	// container: an external file or a bind-mount source is opened only at
	// or below one of them.
	HostPaths []string
	// OwnDirs are directories this restore created (a foreign archive's
	// state directory): sources below them are crtool's own files.
	OwnDirs []string
	// RootGiven says the operator chose the root filesystem.
	RootGiven bool
	// NetnsGiven says the operator chose the network namespace.
	NetnsGiven bool
}

// Options fields named in hints, which the command line renders as flags.
const (
	optHostNamespaces = "AllowHostNamespaces"
	optHostPath       = "AllowHostPath"
	optRoot           = "Root"
	optNetns          = "Netns"
)

// harmlessDevices are the host devices an archive may name as an external
// file or a bind source (runc masks paths with /dev/null): they carry no
// host state.
var harmlessDevices = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}

// systemDirs are never a recorded root filesystem: a container rooted
// there would write the host's own files.
var systemDirs = []string{"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/sbin", "/sys", "/usr"}

func refused(format string, args ...any) error {
	return errdefs.Newf(errdefs.ErrInvalidArchive, format, args...)
}

// CheckMetadata vets what crtool.json (or, for a foreign archive, what
// config.dump and spec.dump were translated into) asks of the host: names
// that become paths, mount options or netlink attributes, cgroup paths,
// namespace paths, the root filesystem, bind-mount sources and external
// files. name is the container name the restore will use.
func (p Policy) CheckMetadata(md *format.Metadata, name string) error {
	if err := format.CheckName("container name", name); err != nil {
		return errdefs.Hint(refused("%w", err), "pass ", "Name", " with a valid name")
	}
	if id := md.Container.ID; id != "" {
		if err := format.CheckName("container.id", id); err != nil {
			return refused("%w", err)
		}
	}
	if l := md.NetworkLock; l != "" {
		if err := format.CheckName("networkLock", l); err != nil {
			return refused("%w", err)
		}
	}
	if !p.RootGiven {
		if err := checkRecordedRoot(md.Container.Root); err != nil {
			return err
		}
	}
	for h, cg := range md.Cgroups.Paths {
		if err := checkHierarchy("cgroups.paths", h); err != nil {
			return err
		}
		if err := format.CheckCgroupPath(fmt.Sprintf("cgroups.paths[%q]", h), cg); err != nil {
			return refused("%w", err)
		}
	}
	if err := p.checkNamespaces(md); err != nil {
		return err
	}
	if err := md.Network.Validate(); err != nil {
		return refused("%w", err)
	}
	if md.Network != nil && !p.AllowHostNamespaces {
		for i, l := range md.Network.Links {
			// A vlan or macvlan on an interface outside the namespace
			// taps the host's network.
			if l.Parent != nil && l.Parent.Netns != format.SelfNetns {
				return errdefs.Hint(refused("network.links[%d].parent: %s %q would sit on the host's interface %q", i, l.Kind, l.Name, l.Parent.Name), "pass ", optHostNamespaces, " to create it")
			}
		}
	}
	for i, m := range md.Mounts {
		field := fmt.Sprintf("externalMounts[%d]", i)
		switch m.Kind {
		case format.MountCgroup:
			if err := checkHierarchy(field+".hierarchy", m.Hierarchy); err != nil {
				return err
			}
			if err := format.CheckCgroupPath(field+".cgroupPath", m.CgroupPath); err != nil {
				return refused("%w", err)
			}
		case format.MountBind:
			if m.Content != "" {
				// The archive carries the mount's content, which restore
				// writes into its own state directory: a private mount's
				// recorded source is never opened, an exported volume's
				// only where it exists.
				if c, err := safefs.CleanName(m.Content); err != nil || c == "" {
					return refused("%s.content %q is not a clean relative name", field, m.Content)
				}
				if _, err := os.Lstat(m.Source); !m.Exported || errors.Is(err, os.ErrNotExist) {
					continue
				}
			}
			if _, err := p.HostPath(field+".source", m.Source); err != nil {
				return err
			}
		default:
			return refused("%s.kind %q is not a mount kind crtool knows", field, m.Kind)
		}
	}
	for i, f := range md.Files {
		field := fmt.Sprintf("externalFiles[%d]", i)
		switch f.Kind {
		case format.FilePipe:
		case format.FileReg:
			real, err := p.HostPath(field+".path", f.Path)
			if err != nil {
				return err
			}
			if err := checkFileType(field+".path", f.Path, real); err != nil {
				return err
			}
		default:
			return refused("%s.kind %q is not a file kind crtool knows", field, f.Kind)
		}
	}
	return nil
}

var hierarchyRE = regexp.MustCompile(`^[a-zA-Z0-9_,=-]*$`)

func checkHierarchy(field, h string) error {
	if !hierarchyRE.MatchString(h) {
		return refused("%s hierarchy %q is not a cgroup controller name", field, h)
	}
	return nil
}

// checkRecordedRoot refuses a root filesystem recorded in the archive that
// is the host's root or a system directory.
func checkRecordedRoot(root string) error {
	if !filepath.IsAbs(root) {
		return errdefs.Hint(refused("container.root %q is not an absolute path", root), "pass ", optRoot, " DIR")
	}
	real := root
	if r, err := filepath.EvalSymlinks(root); err == nil {
		real = r
	}
	for _, d := range systemDirs {
		if real == d || (d != "/" && strings.HasPrefix(real, d+"/")) {
			return errdefs.Hint(refused("container.root %q is the host's %s, not a container's root filesystem", root, d), "pass ", optRoot, " DIR to choose the root filesystem")
		}
	}
	return nil
}

// checkNamespaces refuses namespaces shared with the host and namespace
// paths other than /run/netns/NAME.
func (p Policy) checkNamespaces(md *format.Metadata) error {
	for _, t := range slices.Sorted(maps.Keys(md.Namespaces)) {
		ns := md.Namespaces[t]
		if ns.Shared && !p.AllowHostNamespaces && !(t == "net" && p.NetnsGiven) && t != "user" && t != "cgroup" && t != "time" {
			return errdefs.Hint(refused("namespaces.%s.shared: the container shared the host's %s namespace", t, t), "pass ", optHostNamespaces, " to restore it into the host's")
		}
		if ns.Path == "" || (t == "net" && p.NetnsGiven) {
			continue
		}
		if t != "net" {
			return refused("namespaces.%s.path %q: crtool records a path for the network namespace only", t, ns.Path)
		}
		if err := format.CheckNetnsPath("namespaces.net.path", ns.Path, false); err != nil {
			return refused("%w", err)
		}
		if own, err := IsOwnNetns(ns.Path); err == nil && own && !p.AllowHostNamespaces {
			return errdefs.Hint(refused("namespaces.net.path %q is the host's network namespace", ns.Path), "pass ", optNetns, " PATH to choose the namespace")
		}
	}
	return nil
}

// IsOwnNetns reports whether the namespace file at p is crtool's own
// network namespace, the host's.
func IsOwnNetns(p string) (bool, error) {
	var own, st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		return false, err
	}
	if err := unix.Stat(p, &st); err != nil {
		return false, err
	}
	return own.Dev == st.Dev && own.Ino == st.Ino, nil
}

// CheckImages vets what CRIU's images ask of the host: namespaces shared
// with it, and the cgroup directories and properties CRIU creates.
func (p Policy) CheckImages(s *criuimg.Set) error {
	shared, err := s.SharedNamespaces()
	if err != nil {
		return err
	}
	if p.NetnsGiven {
		// --netns names the namespace CRIU gets as the external one.
		shared = slices.DeleteFunc(shared, func(t string) bool { return t == "net" })
	}
	if len(shared) > 0 && !p.AllowHostNamespaces {
		return errdefs.Hint(refused("checkpoint images: the process tree shares the host's %s namespace", strings.Join(shared, ", ")), "pass ", optHostNamespaces, " to restore it into the host's")
	}
	return s.CheckCgroups()
}

// HostPath checks that path, a host path an archive's field names, is one
// the container may have: a harmless device, a file below a directory of
// this restore, or one the operator allowed. It returns the path with
// symlinks resolved, which is what to open or mount.
func (p Policy) HostPath(field, path string) (string, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return "", refused("%s %q is not a clean absolute path", field, path)
	}
	if slices.Contains(harmlessDevices, path) {
		return path, nil
	}
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, os.ErrNotExist) {
		real = path // reported when it is opened
	} else if err != nil {
		return "", fmt.Errorf("%s %s: %w", field, path, err)
	}
	for _, d := range p.OwnDirs {
		if below(real, d) {
			return real, nil
		}
	}
	for _, d := range p.HostPaths {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			d = r
		}
		if below(real, filepath.Clean(d)) {
			return real, nil
		}
	}
	return "", errdefs.Hint(refused("%s %q names a host path the operator did not allow", field, path), "pass ", optHostPath, " "+path+" to hand it to the container")
}

func below(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// checkFileType refuses, before anything is done, an external file that
// OpenFile would refuse for its type; one that is missing is reported when
// it is opened.
func checkFileType(field, path, real string) error {
	var st unix.Stat_t
	if err := unix.Lstat(real, &st); err != nil {
		return nil
	}
	return fileTypeAllowed(field, path, real, st.Mode)
}

// fileTypeAllowed accepts regular files and harmless devices: a FIFO
// would block the restore, another device would hand the container
// hardware.
func fileTypeAllowed(field, path, real string, mode uint32) error {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return nil
	case unix.S_IFCHR:
		if slices.Contains(harmlessDevices, real) {
			return nil
		}
		return refused("%s %q is a device, which crtool does not hand to a container", field, path)
	}
	return refused("%s %q is not a regular file (mode %#o), which crtool does not hand to a container", field, path, mode&unix.S_IFMT)
}

// OpenFile opens the host file path for an external file of the
// container, with the access mode of flags (writes append). path must pass
// HostPath and its type fileTypeAllowed; it is opened non-blocking, so a
// FIFO swapped in meanwhile cannot block, and its last component is never
// followed.
func (p Policy) OpenFile(field, path string, flags int) (*os.File, error) {
	real, err := p.HostPath(field, path)
	if err != nil {
		return nil, err
	}
	acc := flags & unix.O_ACCMODE
	open := acc | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	if acc != unix.O_RDONLY {
		// Appending never overwrites what the file got meanwhile.
		open |= unix.O_APPEND
	}
	fd, err := unix.Open(real, open, 0)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: create it", field, path, err)
	}
	f := os.NewFile(uintptr(fd), real)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s %s: %w", field, path, err)
	}
	if err := fileTypeAllowed(field, path, real, st.Mode); err != nil {
		f.Close()
		return nil, err
	}
	// Blocking again, as the container had it.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, open&^(unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NOCTTY)); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s %s: %w", field, path, err)
	}
	return f, nil
}
