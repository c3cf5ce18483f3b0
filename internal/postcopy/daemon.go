package postcopy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/crtool/crtool/internal/criu"
)

// DaemonLog is the lazy-pages daemon's log, in the image directory.
const DaemonLog = "lazy-pages.log"

// readyTimeout bounds the wait for the daemon's socket.
const readyTimeout = 30 * time.Second

// Daemon is CRIU's lazy-pages daemon for one restore: it listens in the
// image directory for the restoring CRIU, takes the userfaultfds of the
// restored tasks and fills their memory from the page server, on faults
// first and then in the background, and exits when every page is in.
type Daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	Log  string
}

// StartDaemon runs `criu lazy-pages` in imgDir on ps, a connection to the
// source's page server, and returns once it is ready for the restore.
func StartDaemon(ctx context.Context, criuPath, imgDir string, ps *os.File) (*Daemon, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("lazy-pages daemon: %w", err)
	}
	defer r.Close()
	d := &Daemon{Log: filepath.Join(imgDir, DaemonLog), done: make(chan struct{})}
	// fd 3 is the page server, fd 4 the status pipe CRIU writes a byte
	// to once its socket listens.
	d.cmd = exec.Command(criuPath, "lazy-pages", "--page-server", "--ps-socket", "3", "--status-fd", "4",
		"-D", imgDir, "-o", DaemonLog, "-v4")
	d.cmd.Dir = imgDir
	d.cmd.ExtraFiles = []*os.File{ps, w}
	if err := d.cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("lazy-pages daemon: start %s: %w", criuPath, err)
	}
	w.Close()
	go func() {
		err := d.cmd.Wait()
		if err != nil {
			d.err = d.failure(err)
		}
		close(d.done)
	}()
	ready := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := r.Read(b[:])
		ready <- err
	}()
	select {
	case err := <-ready:
		if err == nil {
			return d, nil
		}
		<-d.done
		if d.err != nil {
			return nil, d.err
		}
		return nil, errors.New("lazy-pages daemon exited before it was ready")
	case <-ctx.Done():
		d.Kill()
		return nil, fmt.Errorf("lazy-pages daemon: %w", ctx.Err())
	case <-time.After(readyTimeout):
		d.Kill()
		return nil, fmt.Errorf("lazy-pages daemon not ready after %v: see %s", readyTimeout, d.Log)
	}
}

// failure describes the daemon's exit with the errors of its log.
func (d *Daemon) failure(err error) error {
	var b strings.Builder
	fmt.Fprintf(&b, "lazy-pages daemon failed (%v)", err)
	for _, l := range criu.LogErrors(d.Log, 6) {
		b.WriteString("\n    ")
		b.WriteString(l)
	}
	fmt.Fprintf(&b, "\n  CRIU log: %s", d.Log)
	return errors.New(b.String())
}

// Wait waits until the daemon has exited: every page arrived (nil) or the
// transfer failed.
func (d *Daemon) Wait() error {
	<-d.done
	return d.err
}

// Done is closed when the daemon has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Kill stops the daemon and waits for it.
func (d *Daemon) Kill() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Kill()
	<-d.done
}
