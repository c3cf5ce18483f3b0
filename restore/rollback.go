package restore

import "github.com/crtool/crtool/internal/undo"

// abort undoes what the failed restore changed on the host. The restore's
// error is what the user acts on; a piece the rollback could not remove is
// reported beside it, as a warning, never dropped.
func (r *restorer) abort() {
	for _, f := range undo.Failures(r.rollback.Run()) {
		r.opts.warnf("%v", f)
	}
}
