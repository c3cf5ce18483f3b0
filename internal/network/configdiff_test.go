package network

import (
	"cmp"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/crtool/crtool/format"
)

// Diff compares two captures the way a restore is verified: it returns one
// line per difference, nothing when they match. Left out are what the kernel
// assigns or what Replay deliberately changes: interface indexes, the outer
// ends of veth pairs (ReplayOptions move them), link-local addresses the
// kernel derives (Auto addresses other than lo's 127.0.0.1 and ::1, which
// must be there), remaining lifetimes (only "forever" against "finite" counts), DAD state
// and the nodad flag Replay adds to IPv6 addresses, Unsupported and Sockets
// (CRIU restores sockets, not Replay).
func Diff(a, b *format.Config) []string {
	if a == nil {
		a = &format.Config{}
	}
	if b == nil {
		b = &format.Config{}
	}
	var out []string
	out = append(out, diffKeyed("link", linksByName(a), linksByName(b))...)
	out = append(out, diffKeyed("address", addrsByKey(a), addrsByKey(b))...)
	out = append(out, diffKeyed("route", keyedBy(a.Routes, routeKey), keyedBy(b.Routes, routeKey))...)
	out = append(out, diffKeyed("rule", keyedBy(a.Rules, ruleKey), keyedBy(b.Rules, ruleKey))...)
	out = append(out, diffKeyed("neighbor", keyedBy(a.Neighbors, neighborKey), keyedBy(b.Neighbors, neighborKey))...)
	out = append(out, diffSysctlMaps(a.Sysctls, b.Sysctls)...)
	return out
}

func linksByName(c *format.Config) map[string]any {
	m := map[string]any{}
	for _, l := range c.Links {
		l.Index = 0
		l.Flags = sortedCopy(l.Flags)
		if l.Peer != nil {
			p := *l.Peer
			if p.Netns == format.SelfNetns {
				// Both ends are in the namespace; the other end is compared
				// as a link of its own.
				l.Peer = &format.Peer{Name: p.Name, Netns: format.SelfNetns}
			} else {
				l.Peer = nil
			}
		}
		m[l.Name] = l
	}
	return m
}

// volatileAddrFlags are DAD progress and what Replay adds on purpose.
var volatileAddrFlags = []string{"tentative", "dadfailed", "optimistic"}

func addrsByKey(c *format.Config) map[string]any {
	loopbacks := map[string]bool{}
	for _, l := range c.Links {
		loopbacks[l.Name] = l.Kind == format.KindLoopback
	}
	m := map[string]any{}
	for _, a := range c.Addrs {
		// A link-local address appears only once the link has a carrier.
		if a.Auto && !loopbacks[a.Link] {
			continue
		}
		v6 := strings.Contains(a.CIDR, ":")
		var flags []string
		for _, f := range a.Flags {
			if slices.Contains(volatileAddrFlags, f) || (v6 && f == "nodad") {
				continue
			}
			flags = append(flags, f)
		}
		a.Flags = sortedCopy(flags)
		a.ValidLft, a.PreferredLft = lifetimeClass(a.ValidLft), lifetimeClass(a.PreferredLft)
		m[a.Link+" "+a.CIDR] = a
	}
	return m
}

// lifetimeClass keeps only whether a lifetime is infinite, zero or finite.
func lifetimeClass(v uint32) uint32 {
	if v == 0 || v == format.Forever {
		return v
	}
	return 1
}

func routeKey(r format.Route) string {
	return fmt.Sprintf("%s %s table %d metric %d (%s)", r.Type, cmp.Or(r.Dst, "default"), r.Table, r.Priority, r.Family)
}

func ruleKey(r format.Rule) string {
	b, _ := json.Marshal(r)
	return string(b)
}

func neighborKey(n format.Neighbor) string { return n.IP + " dev " + n.Link }

func keyedBy[T any](items []T, key func(T) string) map[string]any {
	m := map[string]any{}
	for _, it := range items {
		m[key(it)] = it
	}
	return m
}

func sortedCopy(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func diffKeyed(what string, a, b map[string]any) []string {
	sorted := unionKeys(a, b)
	var out []string
	for _, k := range sorted {
		va, inA := a[k]
		vb, inB := b[k]
		switch {
		case !inB:
			out = append(out, fmt.Sprintf("%s %s: only in the first", what, k))
		case !inA:
			out = append(out, fmt.Sprintf("%s %s: only in the second", what, k))
		default:
			for _, d := range fieldDiff(va, vb) {
				out = append(out, fmt.Sprintf("%s %s: %s", what, k, d))
			}
		}
	}
	return out
}

// fieldDiff compares two values field by field through their JSON form,
// which names the fields as stored.
func fieldDiff(a, b any) []string {
	var ma, mb map[string]any
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	json.Unmarshal(ja, &ma)
	json.Unmarshal(jb, &mb)
	fields := map[string]bool{}
	for k := range ma {
		fields[k] = true
	}
	for k := range mb {
		fields[k] = true
	}
	var names []string
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []string
	for _, f := range names {
		if !reflect.DeepEqual(ma[f], mb[f]) {
			out = append(out, fmt.Sprintf("%s %s != %s", f, jsonText(ma[f]), jsonText(mb[f])))
		}
	}
	return out
}

func jsonText(v any) string {
	if v == nil {
		return "(none)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func diffSysctlMaps(a, b map[string]string) []string {
	sorted := unionKeys(a, b)
	var out []string
	for _, k := range sorted {
		va, inA := a[k]
		vb, inB := b[k]
		switch {
		case !inA:
			out = append(out, fmt.Sprintf("sysctl %s: default != %q", k, vb))
		case !inB:
			out = append(out, fmt.Sprintf("sysctl %s: %q != default", k, va))
		case va != vb:
			out = append(out, fmt.Sprintf("sysctl %s: %q != %q", k, va, vb))
		}
	}
	return out
}

// unionKeys returns the keys of a and b, sorted.
func unionKeys[V any](a, b map[string]V) []string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	return sorted
}
