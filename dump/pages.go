package dump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/format"
	"github.com/crtool/crtool/internal/archive"
	"github.com/crtool/crtool/internal/criu"
	"github.com/crtool/crtool/internal/pageserver"
	"github.com/crtool/crtool/internal/testpoint"
)

// pageStream carries CRIU's memory pages straight into the archive: CRIU
// sends them to crtool as to a page server, over a socket pair, and each
// process's pages-N.img becomes an archive member while CRIU dumps. The
// staging directory never holds them: a dump needs no room for the
// container's memory besides the archive, and the pages are not written
// and read back once more.
type pageStream struct {
	archive *archive.Stream
	conn    net.Conn
	criuEnd *os.File // CRIU's end of the socket pair
	sink    *pageserver.Images
	cancel  context.CancelFunc
	done    chan error
}

// streamsPages reports whether the dump sends pages straight into the
// archive. Standard output cannot take the headers rewritten at the end,
// and --keep-images wants the pages as files.
func (d *dumper) streamsPages() bool {
	return !d.opts.StagePages && !d.opts.LazyPages && d.opts.Output != format.Stdio && d.opts.KeepImages == ""
}

// startPages creates the archive, starts the receiver and points CRIU's
// request at it.
func (d *dumper) startPages(ctx context.Context, req *criu.Request) error {
	imgInfo, err := os.Stat(d.wd.Images)
	if err != nil {
		return fmt.Errorf("image directory: %w", err)
	}
	if err := d.guardTempArchive(); err != nil {
		return err
	}
	s, err := archive.CreateStream(d.opts.Output, archive.WriteOptions{Compression: d.opts.Compression, Progress: d.opts.Progress, Manifest: true})
	if err != nil {
		return err
	}
	d.rollback.Push("remove the unfinished "+d.opts.Output, func() error { s.Abort(); return nil })
	if err := s.AddDir(format.CheckpointDir, imgInfo); err != nil {
		return fmt.Errorf("write %s: %w", d.opts.Output, err)
	}
	conn, criuEnd, err := pageserver.SocketPair()
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	p := &pageStream{archive: s, conn: conn, criuEnd: criuEnd, cancel: cancel, done: make(chan error, 1)}
	p.sink = &pageserver.Images{Dir: d.wd.Images, Pages: func(name string) (io.WriteCloser, error) {
		return s.Create(path.Join(format.CheckpointDir, name))
	}}
	go func() {
		err := pageserver.Receive(rctx, conn, p.sink)
		if err != nil {
			// CRIU must not wait for a receiver that gave up: closing
			// the socket fails its next send, and so the dump.
			conn.Close()
		}
		p.done <- err
	}()
	req.Files = append(req.Files, criuEnd)
	req.Opts.Ps = &rpc.CriuPageServerInfo{Fd: proto.Int32(criu.FD(len(req.Files) - 1))}
	d.pages = p
	return nil
}

// pagesDone collects the receiver once CRIU has answered. A receiver that
// failed is the cause of CRIU's failure and reported as such.
func (d *dumper) pagesDone(criuErr error) error {
	p := d.pages
	p.criuEnd.Close()
	if criuErr != nil {
		p.cancel()
	}
	recvErr := <-p.done
	p.cancel()
	p.conn.Close()
	if recvErr != nil {
		p.sink.Abort()
	}
	switch {
	case recvErr != nil && !errors.Is(recvErr, pageserver.ErrEarlyClose) && !errors.Is(recvErr, context.Canceled):
		if criuErr != nil {
			d.opts.logf("CRIU, after the page receiver failed: %v", criuErr)
		}
		return fmt.Errorf("write memory pages into %s: %w", d.opts.Output, recvErr)
	case criuErr != nil:
		return criuErr
	case recvErr != nil:
		return fmt.Errorf("write memory pages into %s: %w", d.opts.Output, recvErr)
	}
	d.opts.logf("received %d bytes of memory pages into %s", p.sink.Written(), d.opts.Output)
	return nil
}

// writeArchive writes the staged directory into the archive: after the
// streamed pages, or as a whole when the pages were staged.
func (d *dumper) writeArchive(ctx context.Context, progress func(done, total int64)) error {
	if d.pages == nil {
		_, err := archive.WriteFile(ctx, d.opts.Output, d.wd.Path, archive.WriteOptions{Compression: d.opts.Compression, Progress: progress, Manifest: true})
		return err
	}
	s := d.pages.archive
	// The unfinished archive holds the pages already: mid-write for the
	// kill-point tests.
	testpoint.Reach("dump-writing")
	// The checkpoint directory's entry went first, before its pages.
	skip := func(rel string) bool { return rel == format.CheckpointDir }
	if err := s.AddTree(ctx, d.wd.Path, skip); err != nil {
		return fmt.Errorf("write %s: %w", d.opts.Output, err)
	}
	_, err := s.Commit(ctx)
	return err
}
