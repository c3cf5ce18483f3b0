package dump

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/guardian"
	"github.com/crtool/crtool/internal/pageserver"
	"github.com/crtool/crtool/internal/postcopy"
)

// lazyServe is a post-copy dump: CRIU writes every image but the lazy
// memory (private anonymous pages), crtool writes the archive, and CRIU
// then serves the remaining pages through crtool's authenticated relay
// until the destination has them all. The container stays frozen all the
// while: CRIU's pipes still refer to its memory.
type lazyServe struct {
	server  *postcopy.Server
	conn    net.Conn // crtool's end of CRIU's page-server socket
	criuEnd *os.File
	token   string
	packed  bool
	served  chan error
	// restorePipe puts fs.pipe-max-size back after the transfer.
	restorePipe func() error
}

// ErrLazyAfterResume is a post-copy transfer that failed once the
// destination was running: neither side has the whole container.
var ErrLazyAfterResume = errors.New("the destination was already running")

// startLazy opens the page server and points CRIU's request at it.
func (d *dumper) startLazy(ctx context.Context, req *criu.Request) error {
	restorePipe, old, err := postcopy.EnsurePipeMaxSize(postcopy.PipeMaxSize)
	if err != nil {
		return err
	}
	// Journaled too: a killed crtool's guardian puts the sysctl back.
	rec := guardian.RestoreSysctl(postcopy.PipeMaxSizePath, old, postcopy.PipeMaxSize)
	if err := d.rollback.PushRecord("restore fs.pipe-max-size", rec, restorePipe); err != nil {
		return err
	}
	token, err := postcopy.NewToken()
	if err != nil {
		return err
	}
	srv, err := postcopy.Listen(d.opts.PageServer, token)
	if err != nil {
		return err
	}
	srv.Logf = d.opts.Logf
	d.rollback.Push("close the page server", func() error {
		if err := srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	conn, criuEnd, err := pageserver.SocketPair()
	if err != nil {
		return err
	}
	l := &lazyServe{server: srv, conn: conn, criuEnd: criuEnd, token: token, served: make(chan error, 1), restorePipe: restorePipe}
	d.lazy = l
	req.Files = append(req.Files, criuEnd)
	// Over RPC, CRIU's lazy page server ignores the page-server address
	// and listens on every address; ps-socket, which only a configuration
	// file sets, makes it serve on the socket pair instead.
	conf := filepath.Join(d.wd.Path, "criu-lazy.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "ps-socket %d\n", criu.FD(len(req.Files)-1)), 0o600); err != nil {
		return fmt.Errorf("write CRIU configuration: %w", err)
	}
	req.Opts.LazyPages = proto.Bool(true)
	req.Opts.ConfigFile = proto.String(conf)
	prev := req.Notify
	req.Notify = func(script string, pid int32) error {
		if script == "status-ready" {
			return d.lazyReady(ctx)
		}
		if prev != nil {
			return prev(script, pid)
		}
		return nil
	}
	return nil
}

// lazyReady runs when CRIU has written the images and is about to serve
// pages: the archive is written, and the relay starts.
func (d *dumper) lazyReady(ctx context.Context) error {
	l := d.lazy
	l.criuEnd.Close()
	// The archive records the network, which is still being captured.
	if d.captured != nil {
		err := <-d.captured
		d.captured = nil
		if err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(format.LazyPages{PageServer: l.server.Addr(), Token: l.token}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.wd.Path, format.LazyPagesFile), b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", format.LazyPagesFile, err)
	}
	if err := os.Remove(filepath.Join(d.wd.Path, "criu-lazy.conf")); err != nil {
		return fmt.Errorf("remove CRIU configuration: %w", err)
	}
	if err := d.pack(ctx); err != nil {
		return err
	}
	l.packed = true
	d.opts.infof("%s is complete; serving the rest of the memory on %s until `crtool restore --lazy-pages -f %s` has it all",
		d.opts.Output, l.server.Addr(), filepath.Base(d.opts.Output))
	go func() { l.served <- l.server.Serve(ctx, l.conn) }()
	return nil
}

// lazyDone reads the relay's outcome once CRIU has returned. CRIU takes a
// destination that hung up for one that is done, so the relay's word
// decides. A transfer that failed after the destination had started
// leaves no whole container on either side: the source is stopped rather
// than thawed, so that it cannot run twice.
func (d *dumper) lazyDone(criuErr error) error {
	l := d.lazy
	var relayErr error
	if l.packed {
		if criuErr != nil {
			l.conn.Close()
		}
		relayErr = <-l.served
	} else {
		l.criuEnd.Close()
		l.conn.Close()
	}
	l.server.Close()
	if perr := l.restorePipe(); perr != nil {
		d.opts.warnf("%v", perr)
	}
	err := criuErr
	if err == nil {
		err = relayErr
	} else if relayErr != nil {
		err = fmt.Errorf("%w (page server: %w)", criuErr, relayErr)
	}
	if err == nil {
		d.opts.logf("served %d bytes of lazy memory", l.server.Sent())
		return nil
	}
	if l.server.Sent() > 0 {
		if serr := d.stop(); serr != nil {
			d.opts.warnf("stopping the source: %v", serr)
		}
		return fmt.Errorf("post-copy transfer failed after %d bytes, and %w: the source container was stopped, the destination lacks memory: %w",
			l.server.Sent(), ErrLazyAfterResume, err)
	}
	return err
}
