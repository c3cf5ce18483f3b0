package format

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// An archive is untrusted input: the checks below vet the fields whose
// values reach a path, a mount option, netlink or /proc/sys on restore, so
// that a crafted value is refused before anything acts on it. Each error
// names the field and the offending value, quoted.

// MaxNameLen bounds container and namespace names, as Podman does.
const MaxNameLen = 253

// nameRE is Podman's pattern for container names: nothing that a path
// (no "/", no "." or ".." alone), a mount option ("," "=" ":") or a shell
// could read as syntax.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// CheckName checks a container or network namespace name, which becomes a
// directory name and part of overlay mount options.
func CheckName(field, name string) error {
	if len(name) > MaxNameLen || !nameRE.MatchString(name) {
		return fmt.Errorf("%s %q is not a valid name: it must match [a-zA-Z0-9][a-zA-Z0-9_.-]* and have at most %d characters", field, name, MaxNameLen)
	}
	return nil
}

// linkNameMax is IFNAMSIZ-1.
const linkNameMax = 15

// CheckLinkName checks a network interface name as the kernel's
// dev_valid_name does (1 to 15 bytes, not "." or "..", no "/", ":" or
// white space), and further allows printable ASCII only.
func CheckLinkName(field, name string) error {
	ok := name != "" && len(name) <= linkNameMax && name != "." && name != ".."
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c > ' ' && c < 0x7f && c != '/' && c != ':'
	}
	if !ok {
		return fmt.Errorf("%s %q is not a valid interface name", field, name)
	}
	return nil
}

// SysctlPrefixes are the sysctl trees an archive may set: per network
// namespace ones only, and written only into the container's own namespace.
var SysctlPrefixes = []string{"net.ipv4.", "net.ipv6.", "net.core."}

// sysctlComponentRE is one component of a sysctl name other than an
// interface name.
var sysctlComponentRE = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// maxSysctlValue bounds a sysctl value; the kernel takes at most a page.
const maxSysctlValue = 1024

// CheckSysctlKey checks a key in sysctl(8) notation: under one of
// SysctlPrefixes, three or four plain components, or five for the
// per-interface groups (net.ipv4.conf.IF.NAME, net.ipv6.neigh.IF.NAME),
// where IF is "all", "default" or an interface name with its dots written
// as slashes.
func CheckSysctlKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("network.sysctls key %q is refused: %s; crtool sets only %s keys of the container's own network namespace", key, why, strings.Join(SysctlPrefixes, "*, ")+"*")
	}
	allowed := false
	for _, p := range SysctlPrefixes {
		allowed = allowed || strings.HasPrefix(key, p)
	}
	if !allowed {
		return bad("not a network namespace key")
	}
	parts := strings.Split(key, ".")
	perDevice := len(parts) >= 3 && (parts[2] == "conf" || parts[2] == "neigh") && parts[1] != "core"
	switch {
	case perDevice && len(parts) != 5:
		return bad("a per-interface key has five components")
	case !perDevice && (len(parts) < 3 || len(parts) > 4):
		return bad("it has too few or too many components")
	}
	for i, p := range parts {
		if perDevice && i == 3 {
			dev := strings.ReplaceAll(p, "/", ".")
			if dev == "all" || dev == "default" {
				continue
			}
			if err := CheckLinkName("interface", dev); err != nil {
				return bad(err.Error())
			}
			continue
		}
		if !sysctlComponentRE.MatchString(p) {
			return bad(fmt.Sprintf("component %q is not a plain name", p))
		}
	}
	return nil
}

// CheckSysctlValue checks a value to write: printable, at most 1 KiB.
func CheckSysctlValue(key, value string) error {
	ok := len(value) <= maxSysctlValue
	for i := 0; ok && i < len(value); i++ {
		c := value[i]
		ok = (c >= ' ' && c < 0x7f) || c == '\t'
	}
	if !ok {
		return fmt.Errorf("network.sysctls value of %s is refused: at most %d printable characters", key, maxSysctlValue)
	}
	return nil
}

// CheckCgroupPath checks a cgroup path as recorded (crtool.json's
// cgroups.paths, CRIU's cgroup.img): absolute, clean, no ".." and no
// control characters, so that it stays below the hierarchy's mount.
func CheckCgroupPath(field, p string) error {
	ok := strings.HasPrefix(p, "/") && path.Clean(p) == p && !strings.Contains(p, "/../") && !strings.HasSuffix(p, "/..")
	for i := 0; ok && i < len(p); i++ {
		ok = p[i] >= ' ' && p[i] != 0x7f
	}
	if !ok {
		return fmt.Errorf("%s %q is not a clean absolute cgroup path", field, p)
	}
	return nil
}

// NamedNetnsDir is where named network namespaces live (ip-netns(8)); the
// only namespace paths an archive may name.
const NamedNetnsDir = "/run/netns"

// CheckNetnsPath checks a recorded namespace: "" (unknown), HostNetns or
// SelfNetns where allowSpecial, or a name directly under /run/netns.
// Anything else (/proc/self/ns/net, /proc/1/ns/net) would hand a
// namespace of the archive's choosing, the host's, to the container.
func CheckNetnsPath(field, p string, allowSpecial bool) error {
	if p == "" || (allowSpecial && (p == HostNetns || p == SelfNetns)) {
		return nil
	}
	dir, name := path.Split(p)
	if dir != NamedNetnsDir+"/" || CheckName(field, name) != nil {
		return fmt.Errorf("%s %q is refused: an archive may name only namespaces under %s/ (give another one with --netns or --peer-netns)", field, p, NamedNetnsDir)
	}
	return nil
}

// Validate checks the fields of a network configuration that reach
// netlink, /proc/sys or a namespace path: link names, sysctl keys and
// values, and the namespaces of veth peers and vlan/macvlan parents.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	for i, l := range c.Links {
		f := fmt.Sprintf("network.links[%d]", i)
		if err := CheckLinkName(f+".name", l.Name); err != nil {
			return err
		}
		if l.Master != "" {
			if err := CheckLinkName(f+".master", l.Master); err != nil {
				return err
			}
		}
		if p := l.Peer; p != nil {
			if p.Name != "" {
				if err := CheckLinkName(f+".peer.name", p.Name); err != nil {
					return err
				}
			}
			if p.Master != "" {
				if err := CheckLinkName(f+".peer.master", p.Master); err != nil {
					return err
				}
			}
			if err := CheckNetnsPath(f+".peer.netns", p.Netns, true); err != nil {
				return err
			}
		}
		if p := l.Parent; p != nil {
			if err := CheckLinkName(f+".parent.name", p.Name); err != nil {
				return err
			}
			if err := CheckNetnsPath(f+".parent.netns", p.Netns, true); err != nil {
				return err
			}
		}
	}
	for k, v := range c.Sysctls {
		if err := CheckSysctlKey(k); err != nil {
			return err
		}
		if err := CheckSysctlValue(k, v); err != nil {
			return err
		}
	}
	return nil
}
