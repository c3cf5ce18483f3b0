package restore

import (
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/cgroups"
)

// cgroupSet is where the restored container's cgroups go: the recorded
// paths, or opts.Cgroup on every controller (the original may still hold
// its own, as the source of a post-copy migration on the same host does).
func (r *restorer) cgroupSet() cgroups.Set {
	cg := cgroups.Set(r.md.Cgroups.Paths)
	if r.opts.Cgroup == "" {
		return cg
	}
	moved := cgroups.Set{}
	for k := range cg {
		moved[k] = r.opts.Cgroup
	}
	return moved
}

// cgroupOptions has CRIU put the container's root cgroup at opts.Cgroup.
func (r *restorer) cgroupOptions(opts *rpc.CriuOpts) {
	if r.opts.Cgroup != "" {
		opts.CgRoot = []*rpc.CgroupRoot{{Path: proto.String(r.opts.Cgroup)}}
	}
}
