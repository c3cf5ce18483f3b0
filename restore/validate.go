package restore

import (
	"context"
	"fmt"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/criuimg"
	"github.com/crtool/crtool/internal/trust"
)

// An archive is untrusted input (see README, "Trust model"): validate runs
// after the archive is unpacked and described and before anything on the
// host changes; the steps after it act only on what it accepted.

// policy is what the operator's options allow the archive.
func (r *restorer) policy() trust.Policy {
	p := trust.Policy{
		AllowHostNamespaces: r.opts.AllowHostNamespaces,
		HostPaths:           r.opts.AllowHostPath,
		RootGiven:           r.opts.Root != "",
		NetnsGiven:          r.opts.Netns != "",
	}
	if r.fg != nil {
		// The files that replace the writer's per-container ones are
		// crtool's, in the state directory this restore creates.
		p.OwnDirs = append(p.OwnDirs, r.fg.Dir)
	}
	if r.dir != nil && r.dir.created {
		// The private mounts recreated there are crtool's too.
		p.OwnDirs = append(p.OwnDirs, r.dir.path)
	}
	// A volume the operator maps with --volume is handed over by name.
	for _, src := range r.opts.Volumes {
		p.HostPaths = append(p.HostPaths, src)
	}
	return p
}

// validate refuses an archive whose crtool.json (or config.dump and
// spec.dump) or CRIU images ask for more than the container's own
// namespaces, root filesystem and what the operator allowed.
func (r *restorer) validate(ctx context.Context) error {
	// What the archive's volumes are bound from is the operator's word.
	if err := r.mapVolumes(); err != nil {
		return err
	}
	p := r.policy()
	if err := p.CheckMetadata(r.md, r.name); err != nil {
		return fmt.Errorf("%s: %w", r.opts.Input, err)
	}
	if err := p.CheckImages(criuimg.New(criuimg.Dir(r.wd.Images), format.CheckpointDir+"/")); err != nil {
		return fmt.Errorf("%s: %w", r.opts.Input, err)
	}
	return nil
}
