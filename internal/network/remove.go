package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DeleteBridgeIfUnused deletes the bridge name in nsPath unless a link is
// still attached to it. It reports whether the bridge is gone.
func DeleteBridgeIfUnused(nsPath, name string) (bool, error) {
	gone := false
	err := withHandle(nsPath, unix.NETLINK_ROUTE, func(h *netlink.Handle) error {
		br, err := h.LinkByName(name)
		if err != nil {
			if isLinkNotFound(err) {
				gone = true
				return nil
			}
			return err
		}
		links, err := h.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				return nil
			}
		}
		if err := h.LinkDel(br); err != nil && !errors.Is(err, unix.ENODEV) {
			return err
		}
		gone = true
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("delete bridge %s in %s: %w", name, nsLabel(nsPath), err)
	}
	return gone || errors.Is(err, os.ErrNotExist), nil
}

// DeleteNamedPath unpins the named namespace at path (NamedDir/NAME); one
// already gone counts as deleted.
func DeleteNamedPath(path string) error {
	if filepath.Dir(path) != NamedDir {
		return fmt.Errorf("%s is not a named network namespace (%s/NAME)", path, NamedDir)
	}
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return DeleteNamed(filepath.Base(path))
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}
