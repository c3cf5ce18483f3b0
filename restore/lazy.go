package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/guardian"
	"github.com/crtool/crtool/internal/postcopy"
	"github.com/crtool/crtool/internal/workdir"
)

// Transfer is the memory a post-copy restore still receives while the
// container runs.
type Transfer struct {
	daemon *postcopy.Daemon
	wd     *workdir.Dir
	start  time.Time
	pid    int
	warnf  func(format string, args ...any)
	// restorePipe puts fs.pipe-max-size back once the daemon is done.
	restorePipe func() error
	// Took is how long the transfer ran, once Wait returned.
	Took time.Duration
}

// Wait returns once every page has arrived, or the transfer failed: then
// the restored container cannot go on and is killed. The work directory
// goes either way.
func (t *Transfer) Wait() (err error) {
	err = t.daemon.Wait()
	t.Took = time.Since(t.start)
	clean := t.wd.Remove
	if err != nil {
		// The daemon's log stays, in crtool's log directory.
		kept := workdir.KeptLog("lazy-pages")
		clean = func() error { return t.wd.RemoveKeepingLog(t.daemon.Log, kept) }
		defer func() {
			if err != nil {
				err = fmt.Errorf("%w (lazy-pages log: %s)", err, kept)
			}
		}()
	}
	for _, rerr := range []error{t.restorePipe(), clean()} {
		if rerr != nil && t.warnf != nil {
			t.warnf("%v", rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("post-copy transfer broke off after %v; the restored container (pid %d) lacks memory and dies on its next access to it: %w",
			t.Took.Round(time.Millisecond), t.pid, err)
	}
	return nil
}

// lazyPages reads the archive's post-copy record, checking that the
// archive and --lazy-pages agree.
func (r *restorer) lazyPages() (*format.LazyPages, error) {
	b, err := os.ReadFile(filepath.Join(r.wd.Path, format.LazyPagesFile))
	switch {
	case errors.Is(err, os.ErrNotExist) && r.opts.LazyPages:
		return nil, fmt.Errorf("%s holds all its memory (it was not written by crtool dump --lazy-pages): restore it without --lazy-pages", r.opts.Input)
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%s: %w", format.LazyPagesFile, err)
	case !r.opts.LazyPages:
		return nil, fmt.Errorf("%s was written by crtool dump --lazy-pages, its memory is still at the source: restore it with --lazy-pages", r.opts.Input)
	}
	var lp format.LazyPages
	if err := json.Unmarshal(b, &lp); err != nil {
		return nil, fmt.Errorf("%s: %w", format.LazyPagesFile, err)
	}
	if r.opts.PageServer != "" {
		lp.PageServer = r.opts.PageServer
	}
	return &lp, nil
}

// prepareLazy connects to the source's page server and starts CRIU's
// lazy-pages daemon, which the restore hands the memory to.
func (r *restorer) prepareLazy(ctx context.Context) error {
	lp, err := r.lazyPages()
	if err != nil || lp == nil {
		return err
	}
	restorePipe, old, err := postcopy.EnsurePipeMaxSize(postcopy.PipeMaxSize)
	if err != nil {
		return err
	}
	// Journaled too: a killed crtool's guardian puts the sysctl back.
	rec := guardian.RestoreSysctl(postcopy.PipeMaxSizePath, old, postcopy.PipeMaxSize)
	if err := r.rollback.PushRecord("restore fs.pipe-max-size", rec, restorePipe); err != nil {
		return err
	}
	r.restorePipe = restorePipe
	ps, err := postcopy.Dial(ctx, lp.PageServer, lp.Token)
	if err != nil {
		return fmt.Errorf("%w (--page-server %s)", err, lp.PageServer)
	}
	defer ps.Close()
	d, err := postcopy.StartDaemon(ctx, r.bin.Path, r.wd.Images, ps)
	if err != nil {
		return err
	}
	r.rollback.Push("stop the lazy-pages daemon", func() error { d.Kill(); return nil })
	r.daemon = d
	r.opts.logf("lazy-pages daemon ready, fetching from %s", lp.PageServer)
	return nil
}

// lazyOptions marks CRIU's restore request post-copy.
func (r *restorer) lazyOptions(req *criu.Request) {
	if r.daemon != nil {
		req.Opts.LazyPages = proto.Bool(true)
	}
}

// lazyTransfer hands the running transfer to the caller.
func (r *restorer) lazyTransfer(res *Result) {
	if r.daemon == nil {
		return
	}
	res.Transfer = &Transfer{daemon: r.daemon, wd: r.wd, start: time.Now(), pid: r.pid, warnf: r.opts.Warnf, restorePipe: r.restorePipe}
}
