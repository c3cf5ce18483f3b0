package dump

import "github.com/crtool/crtool/internal/undo"

// abort undoes what the failed dump changed: the container is thawed and
// its network unlocked, the partial archive removed. The dump's error is
// what the user acts on; a step of the rollback that failed is reported
// beside it, as a warning, never hidden.
func (d *dumper) abort() {
	for _, f := range undo.Failures(d.rollback.Run()) {
		d.opts.warnf("%v", f)
	}
}
