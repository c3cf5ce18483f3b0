package main

// A byte progress bar on a terminal for the long phases of a dump or restore
// (writing or reading a large archive). The dump and restore packages only
// report bytes through a callback; drawing is the command line's business.

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// delay keeps quick operations quiet: the bar appears only once a phase has
// taken this long.
const delay = time.Second

// Bar reports bytes done out of a total. A nil *Bar does nothing, so callers
// need not check whether progress is shown.
type Bar struct {
	mu    sync.Mutex
	w     io.Writer
	what  string
	start time.Time
	bar   *progressbar.ProgressBar
}

// newBar returns a bar that draws on w, or nil when w is not a terminal
// (a log file or a pipe gets no bar).
func newBar(w *os.File, what string) *Bar {
	if w == nil || !term.IsTerminal(int(w.Fd())) {
		return nil
	}
	return &Bar{w: w, what: what, start: time.Now()}
}

// Update reports done of total bytes; total < 0 means unknown.
func (b *Bar) Update(done, total int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar == nil {
		if time.Since(b.start) < delay {
			return
		}
		b.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription("crtool: "+b.what),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	_ = b.bar.Set64(done)
}

// Done removes the bar.
func (b *Bar) Done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		_ = b.bar.Finish()
		_ = b.bar.Clear()
	}
}

// callback is b's Update for an operation's Progress option, nil (no
// reporting at all) when there is no bar.
func (b *Bar) callback() func(done, total int64) {
	if b == nil {
		return nil
	}
	return b.Update
}
