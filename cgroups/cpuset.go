package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/cgroup"
	oc "github.com/opencontainers/cgroups"
	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/internal/criuimg"
)

// CgroupImage is CRIU's image of the dumped cgroups.
const CgroupImage = "cgroup.img"

// The checkpoint records the cpus and memory nodes of the container's
// cgroup v1 cpuset, and CRIU writes them into the cpuset it creates. A
// source host with more CPUs recorded more than this host has ("0-7" on a
// 2-CPU host): the kernel refuses a cpuset that is not a subset of its
// parent's, and CRIU's restore fails. Restore adapts such values rather
// than refusing: a container that Podman or runc created without a cpuset
// of its own simply had all of its host's CPUs, and runs as well on all of
// this host's. The value becomes the part of the recorded one this host
// has, or when they share nothing the parent's whole set, and each change
// is reported in one warning line. cgroup v2 accepts any cpuset.cpus and
// narrows it by itself, so only v1 is adapted.

// AdaptImage adapts the cpuset values in the cgroup image of the image
// directory dir to this host, after Prepare created the parents, and
// returns one warning per value it changed. A dump without a cgroup image
// needs nothing.
func AdaptImage(dir string) ([]string, error) {
	var warnings []string
	err := criuimg.Rewrite(filepath.Join(dir, CgroupImage), criuimg.Cgroup, func(msgs []proto.Message) (bool, error) {
		if len(msgs) == 0 {
			return false, nil
		}
		w, err := AdaptCpusets(msgs[0].(*cgroup.CgroupEntry), hostCpuset)
		warnings = w
		return len(w) > 0, err
	})
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, criuimg.ErrMissing) {
		return nil, nil
	}
	return warnings, err
}

// Cpuset is the cpus and memory nodes of a cpuset ("0-3", "0").
type Cpuset struct {
	Cpus, Mems string
}

// AdaptCpusets rewrites, in ce, the cpuset.cpus and cpuset.mems of each
// v1 cpuset cgroup CRIU will create so that it is a subset of its parent's:
// what parentOf says for the top ones (called with the path of the
// directory's parent in the hierarchy, "/a/b"), the adapted values of the
// parent directory in the image for the others. It returns a warning line
// per change.
func AdaptCpusets(ce *cgroup.CgroupEntry, parentOf func(parent string) (Cpuset, error)) ([]string, error) {
	var warnings []string
	for _, ctl := range ce.GetControllers() {
		if !slices.Contains(ctl.GetCnames(), "cpuset") {
			continue
		}
		for _, d := range ctl.GetDirs() {
			p := "/" + strings.Trim(d.GetDirName(), "/")
			allowed, err := parentOf(path.Dir(p))
			if err != nil {
				return nil, err
			}
			w, err := adaptDir(d, p, allowed)
			if err != nil {
				return nil, err
			}
			warnings = append(warnings, w...)
		}
	}
	return warnings, nil
}

// adaptDir adapts the directory d, at path p in the cpuset hierarchy, to
// the parent's values allowed, then its children to its own.
func adaptDir(d *cgroup.CgroupDirEntry, p string, allowed Cpuset) ([]string, error) {
	var warnings []string
	own := allowed
	for _, prop := range d.GetProperties() {
		var parent *string
		switch prop.GetName() {
		case "cpuset.cpus":
			parent = &own.Cpus
		case "cpuset.mems":
			parent = &own.Mems
		default:
			continue
		}
		recorded := strings.TrimSpace(prop.GetValue())
		if recorded == "" || *parent == "" {
			continue
		}
		fitted, err := fitList(recorded, *parent)
		if err != nil {
			return nil, fmt.Errorf("%w: cgroup %s: %s %q: %w", criuimg.ErrCorrupt, p, prop.GetName(), recorded, err)
		}
		if fitted != recorded {
			prop.Value = proto.String(fitted)
			warnings = append(warnings, fmt.Sprintf("cgroup cpuset%s: the checkpoint's %s %s is not all on this host (%s here): restoring with %s", p, prop.GetName(), recorded, *parent, fitted))
		}
		*parent = fitted
	}
	for _, c := range d.GetChildren() {
		w, err := adaptDir(c, path.Join(p, c.GetDirName()), own)
		if err != nil {
			return nil, err
		}
		warnings = append(warnings, w...)
	}
	return warnings, nil
}

// hostCpuset reads the cpus and memory nodes available below the cgroup p
// of this host's v1 cpuset hierarchy: those of p, or of its nearest
// existing ancestor. A host without a v1 cpuset hierarchy gives none,
// which leaves the values as recorded.
func hostCpuset(p string) (Cpuset, error) {
	mnt, err := MountPoint("cpuset")
	if err != nil {
		return Cpuset{}, nil
	}
	dir, err := Dir("cpuset", p)
	if err != nil {
		return Cpuset{}, err
	}
	for within(mnt, dir) && !exists(dir) {
		dir = filepath.Dir(dir)
	}
	cpus, err := oc.ReadFile(dir, "cpuset.cpus")
	if err != nil {
		return Cpuset{}, fmt.Errorf("cpuset of %s: %w", dir, err)
	}
	mems, err := oc.ReadFile(dir, "cpuset.mems")
	if err != nil {
		return Cpuset{}, fmt.Errorf("cpuset of %s: %w", dir, err)
	}
	return Cpuset{Cpus: strings.TrimSpace(cpus), Mems: strings.TrimSpace(mems)}, nil
}

// fitList returns the part of the list want that allowed has, or allowed
// when they share nothing. Lists are the kernel's ("0-3,8").
func fitList(want, allowed string) (string, error) {
	w, err := parseList(want)
	if err != nil {
		return "", err
	}
	a, err := parseList(allowed)
	if err != nil {
		return "", fmt.Errorf("this host's %q: %w", allowed, err)
	}
	var both []int
	for _, n := range w {
		if _, ok := slices.BinarySearch(a, n); ok {
			both = append(both, n)
		}
	}
	if len(both) == len(w) {
		return want, nil
	}
	if len(both) == 0 {
		return formatList(a), nil
	}
	return formatList(both), nil
}

// maxListed bounds the numbers a list may name: more CPUs than Linux
// supports means a corrupt image, not a big host.
const maxListed = 1 << 16

// parseList parses a kernel list ("0-3,8") into sorted distinct numbers.
func parseList(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(strings.TrimSpace(s), ",") {
		if f == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(f, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a >= maxListed {
			return nil, fmt.Errorf("bad list element %q", f)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b >= maxListed {
				return nil, fmt.Errorf("bad list element %q", f)
			}
		}
		for n := a; n <= b; n++ {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// formatList writes sorted distinct numbers as a kernel list, ranges
// joined ("0-3,8").
func formatList(ns []int) string {
	var b strings.Builder
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(ns[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(ns[j]))
		}
		i = j + 1
	}
	return b.String()
}
