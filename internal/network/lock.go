package network

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// LockPrefix starts the name of every nftables table crtool uses as a
// network lock; CRIUTablePrefix starts the ones CRIU's nftables lock makes.
const (
	LockPrefix      = "crtool-lock-"
	CRIUTablePrefix = "CRIU-"
)

// CRIUPacketMark is the mark CRIU puts on the packets it sends itself while
// it restores sockets (SOCCR_MARK in CRIU's soccr/soccr.h: the FIN of a
// closed TCP connection, for one). CRIU's own network locks let them pass;
// crtool's must too, or such a restore fails with EPERM.
const CRIUPacketMark = 0xC114

// Lock is a drop-all nftables table in a network namespace. While it is in
// place no packet enters or leaves the namespace but CRIU's own (marked
// CRIUPacketMark): a TCP peer's retransmissions meet silence instead of a
// reset, and the kernel acknowledges nothing that a checkpoint does not
// hold.
type Lock struct {
	NsPath string `json:"netns"`
	Table  string `json:"table"`
}

// LockNamespace installs a lock named LockPrefix+id in the namespace at
// nsPath. Its chains hook input, output and forward at the highest priority
// (raw, -300) with a drop policy; input and output accept CRIUPacketMark.
func LockNamespace(nsPath, id string) (*Lock, error) {
	l := &Lock{NsPath: nsPath, Table: LockPrefix + id}
	err := withConn(nsPath, func(c *nftables.Conn) error {
		t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: l.Table})
		drop := nftables.ChainPolicyDrop
		for _, h := range []struct {
			name     string
			hook     *nftables.ChainHook
			criuPass bool
		}{
			{"input", nftables.ChainHookInput, true},
			{"output", nftables.ChainHookOutput, true},
			{"forward", nftables.ChainHookForward, false},
		} {
			ch := c.AddChain(&nftables.Chain{
				Name: h.name, Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: h.hook, Priority: nftables.ChainPriorityRaw, Policy: &drop,
			})
			if h.criuPass {
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: acceptMark(CRIUPacketMark)})
			}
		}
		return c.Flush()
	})
	if err != nil {
		return nil, fmt.Errorf("lock network of %s: %w", nsPath, err)
	}
	return l, nil
}

// acceptMark is the rule "meta mark MARK accept".
func acceptMark(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// Unlock removes the lock. A lock that is already gone, or whose namespace
// is gone, counts as removed.
func (l *Lock) Unlock() error {
	if l == nil {
		return nil
	}
	return DeleteTable(l.NsPath, l.Table)
}

// DeleteTable removes the inet table name from the namespace at nsPath, if
// it is there.
func DeleteTable(nsPath, name string) error {
	err := withConn(nsPath, func(c *nftables.Conn) error {
		t, err := findTable(c, name)
		if err != nil || t == nil {
			return err
		}
		c.DelTable(t)
		return c.Flush()
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unlock network of %s (table %s): %w", nsPath, name, err)
	}
	return nil
}

// findTable returns the inet table name, nil when there is none.
func findTable(c *nftables.Conn, name string) (*nftables.Table, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, nil
}

// Tables lists the inet tables in the namespace whose names start with
// prefix.
func Tables(nsPath, prefix string) ([]string, error) {
	var names []string
	err := withConn(nsPath, func(c *nftables.Conn) error {
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return err
		}
		for _, t := range tables {
			if strings.HasPrefix(t.Name, prefix) {
				names = append(names, t.Name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list nftables of %s: %w", nsPath, err)
	}
	return names, nil
}

// withConn runs fn with an nftables connection into the namespace at
// nsPath; the netlink socket is opened in that namespace without moving any
// thread.
func withConn(nsPath string, fn func(*nftables.Conn) error) error {
	f, err := os.Open(nsPath)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err == nil && st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("%s is not a network namespace", nsPath)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())), nftables.AsLasting())
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	return fn(c)
}
