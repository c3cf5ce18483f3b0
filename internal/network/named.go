package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/crtool/crtool/format"
)

// NamedDir is where named namespaces are bind-mounted, as with `ip netns`.
const NamedDir = "/run/netns"

// hostNsPath is crtool's own network namespace: that of any thread not
// locked by a goroutine, which by Go convention is where threads stay.
// /proc/self would be the main thread, which may be parked in another
// namespace (see onThread).
const hostNsPath = "/proc/thread-self/ns/net"

// CreateNamed creates a network namespace and pins it at /run/netns/NAME the
// way `ip netns add` does, so iproute2 and other tools see it.
func CreateNamed(name string) (path string, err error) {
	if err := validName(name); err != nil {
		return "", err
	}
	if err := makeSharedDir(NamedDir); err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	path = filepath.Join(NamedDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	f.Close()
	err = onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount: %w", err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	return path, nil
}

// DeleteNamed unpins /run/netns/NAME like `ip netns del`; the namespace goes
// away once no process or open file holds it.
func DeleteNamed(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	path := filepath.Join(NamedDir, name)
	// Lazy unmount as iproute2 does: a mount propagated into other mount
	// namespaces must not keep the file busy.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete netns %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || len(name) > 255 {
		return fmt.Errorf("invalid netns name %q", name)
	}
	return nil
}

// makeSharedDir makes dir a mount point with shared propagation, as iproute2
// does for /run/netns: namespaces pinned later then show up in mount
// namespaces created before (container runtimes, systemd services).
func makeSharedDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	// EINVAL: not a mount point yet. Bind it onto itself first.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}

// onThread runs fn on an OS thread of its own, which fn may move to other
// network namespaces (setns, unshare). The thread goes back to the Go
// scheduler only once it is back in its original namespace; otherwise it
// stays locked and the runtime ends it with the goroutine.
//
// Letting every such thread die instead is not enough: a goroutine may run
// on the main thread, which the runtime never ends but parks forever, still
// in the foreign namespace, which then stays alive and is what
// /proc/self/ns/net shows.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to own network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// inNetns runs fn on a dedicated thread inside the namespace ns.
func inNetns(ns netns.NsHandle, fn func() error) error {
	return onThread(func() error {
		if err := unix.Setns(int(ns), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return fn()
	})
}

// openNetns opens a namespace given as a path or as HostNetns.
func openNetns(path string) (netns.NsHandle, error) {
	p := path
	if p == format.HostNetns {
		p = hostNsPath
	}
	ns, err := netns.GetFromPath(p)
	if err != nil {
		return netns.None(), fmt.Errorf("open network namespace %s: %w", path, err)
	}
	// Otherwise a wrong path only fails later, in a setns deep inside netlink.
	if t, err := unix.IoctlRetInt(int(ns), unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		ns.Close()
		return netns.None(), fmt.Errorf("%s is not a network namespace (want /proc/PID/ns/net or %s/NAME)", path, NamedDir)
	}
	return ns, nil
}

// nsID identifies a namespace independent of the path used to open it.
func nsID(ns netns.NsHandle) (uint64, uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return 0, 0, err
	}
	return st.Dev, st.Ino, nil
}

// nsLabel names a namespace in messages.
func nsLabel(label string) string {
	if label == format.HostNetns {
		return "the host namespace"
	}
	return label
}

// Do runs fn on a thread inside the network namespace at path (a path or
// HostNetns): sockets fn creates stay in that namespace. The thread returns
// to its own namespace before it serves other goroutines again.
func Do(path string, fn func() error) error {
	ns, err := openNetns(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return inNetns(ns, fn)
}
