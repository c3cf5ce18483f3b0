package ociimage

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/crtool/crtool/format"
)

// Annotations on a checkpoint image's manifest. Podman 4 restores an image
// as a checkpoint when it carries podmanPrefix+"runtime.name" naming its
// own OCI runtime; CRI-O (Kubernetes) recognizes one by the container name
// under its own prefix, newer releases by the checkpoint-restore project's.
const (
	podmanPrefix = "io.podman.annotations.checkpoint."
	// AnnotationCRIOName is the annotation CRI-O 1.25 and later check.
	AnnotationCRIOName = "io.kubernetes.cri-o.annotations.checkpoint.name"
	criuPrefix         = "org.criu.checkpoint."

	AnnotationName        = podmanPrefix + "name"
	AnnotationRuntimeName = podmanPrefix + "runtime.name"
)

// annotations describes the checkpoint as Podman's --create-image does,
// from crtool.json (md, nil for an archive crtool did not write) and
// config.dump (cfg). Values crtool cannot know (Podman's, conmon's and the
// runtime's versions when the archive does not say) are left out rather
// than guessed.
func annotations(md *format.Metadata, cfg *format.ContainerConfig, runtimeName string) map[string]string {
	a := map[string]string{}
	set := func(key, v string) {
		if v != "" {
			a[key] = v
		}
	}
	set(podmanPrefix+"name", cfg.Name)
	set(podmanPrefix+"rawImageName", cfg.RawImageName)
	set(podmanPrefix+"rootfsImageID", cfg.RootfsImageID)
	set(podmanPrefix+"rootfsImageName", cfg.RootfsImageName)
	set(podmanPrefix+"runtime.name", runtimeName)
	set(AnnotationCRIOName, cfg.Name)
	set(criuPrefix+"container.name", cfg.Name)
	set(criuPrefix+"rawImageName", cfg.RawImageName)
	set(criuPrefix+"rootfsImageID", cfg.RootfsImageID)
	set(criuPrefix+"rootfsImageName", cfg.RootfsImageName)
	set(criuPrefix+"runtime.name", runtimeName)
	if md == nil {
		return a
	}
	arch := runtime.GOARCH
	if md.CPU != nil && md.CPU.Arch != "" {
		arch = md.CPU.Arch
	}
	cgroups := "v1"
	if md.Cgroups.Layout == "v2" {
		cgroups = "v2"
	}
	for _, kv := range [][2]string{
		{"criu.version", criuVersion(md.CRIUVersion)},
		{"host.arch", arch},
		{"host.kernel", md.Kernel},
		{"cgroups.version", cgroups},
	} {
		set(podmanPrefix+kv[0], kv[1])
		set(criuPrefix+strings.Replace(kv[0], "cgroups", "cgroup", 1), kv[1])
	}
	return a
}

// criuVersion writes CRIU's version as Podman does: go-criu's number,
// major*10000 + minor*100 + sublevel ("4.2.1" is "40201").
func criuVersion(v string) string {
	var major, minor, sub int
	if n, _ := fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &sub); n < 2 {
		return v
	}
	return strconv.Itoa(major*10000 + minor*100 + sub)
}

// runtimeOf is the OCI runtime the checkpoint was taken under, which a
// restoring Podman must be using: config.dump's, then crtool.json's.
func runtimeOf(md *format.Metadata, cfg *format.ContainerConfig) string {
	if cfg.Runtime != "" {
		return cfg.Runtime
	}
	if md != nil {
		return md.Container.Runtime
	}
	return ""
}

// normalizeRef makes ref a full image name as Podman's storage names
// images: a name without a registry is local ("localhost/"), one without a
// tag is ":latest".
func normalizeRef(ref string) string {
	name := ref
	if i := strings.IndexByte(ref, '/'); i < 0 || !strings.ContainsAny(ref[:i], ".:") && ref[:i] != "localhost" {
		name = "localhost/" + ref
	}
	last := name[strings.LastIndexByte(name, '/')+1:]
	if !strings.ContainsAny(last, ":@") {
		name += ":latest"
	}
	return name
}
