package criu

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Notify is called for each action-script notification CRIU sends (for
// example "post-dump", "network-unlock", "setup-namespaces",
// "post-restore"). Returning an error makes CRIU abort and roll back.
type Notify func(script string, pid int32) error

// Request is one CRIU RPC call.
type Request struct {
	Type rpc.CriuReqType
	Opts *rpc.CriuOpts
	// Files are handed to the CRIU process; Files[i] is its descriptor FD(i).
	// inherit-fd entries refer to them by that number.
	Files  []*os.File
	Notify Notify
	// LogPath is the host path of CRIU's log, read for errors.
	LogPath string
	// KeptLog, when set, is where the caller keeps the log after a
	// failure; errors quote it instead of LogPath.
	KeptLog string
	// DieWithCaller kills CRIU when the calling process dies (a restore:
	// its half-restored tree is removed anyway). Without it, a CRIU whose
	// caller died finishes or aborts by itself, which for a dump means it
	// takes established connections out of repair mode again.
	DieWithCaller bool
	// Started, when set, learns CRIU's PID as soon as it runs, before the
	// request is sent: a guardian waits for a CRIU that outlived crtool.
	Started func(pid int) error
}

// FD is the descriptor number under which CRIU sees Request.Files[i]
// (0-2 are stdio, 3 is the RPC socket).
func FD(i int) int32 { return int32(4 + i) }

// Error is a failed CRIU call, with the lines of CRIU's log that explain it.
type Error struct {
	Op    string   // "dump", "restore", ...
	Cause string   // CRIU's own message, or how the process ended
	Log   string   // path of CRIU's log
	Lines []string // error lines quoted from the log
	Err   error    // underlying error, if any (for errors.Is)
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "criu %s failed: %s", e.Op, e.Cause)
	for _, l := range e.Lines {
		b.WriteString("\n    ")
		b.WriteString(l)
	}
	if e.Log != "" {
		fmt.Fprintf(&b, "\n  CRIU log: %s", e.Log)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// maxQuoted bounds how many log lines an error quotes.
const maxQuoted = 8

// Run starts `criu swrk`, sends req and serves notifications until CRIU
// answers with the result. Cancelling ctx kills CRIU: a task CRIU seized is
// detached by the kernel and its parasite returns to the task's own code, so
// the caller can thaw the container afterwards.
func (b *Binary) Run(ctx context.Context, req Request) (*rpc.CriuResp, error) {
	op := strings.ToLower(req.Type.String())
	fds, err := unix.Socketpair(unix.AF_LOCAL, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("criu %s: socketpair: %w", op, err)
	}
	client := os.NewFile(uintptr(fds[0]), "criu-client")
	server := os.NewFile(uintptr(fds[1]), "criu-server")
	defer client.Close()

	var stderr limitedBuffer
	cmd := exec.Command(b.Path, "swrk", "3")
	cmd.ExtraFiles = append([]*os.File{server}, req.Files...)
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	// The parent death signal fires when the thread that forked exits, so
	// CRIU is started from a thread locked for as long as CRIU runs.
	if req.DieWithCaller {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	started := make(chan error)
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		started <- cmd.Start()
		<-release
		runtime.UnlockOSThread()
	}()
	defer close(release)
	if err := <-started; err != nil {
		server.Close()
		return nil, fmt.Errorf("criu %s: start %s: %w", op, b.Path, err)
	}
	server.Close()
	if req.Started != nil {
		if err := req.Started(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			client.Close()
			return nil, fmt.Errorf("criu %s: %w", op, err)
		}
	}

	// The watcher kills CRIU when ctx is cancelled, and also when CRIU
	// broke off the conversation but does not exit by itself.
	exited := make(chan struct{})
	broke := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
		case <-broke:
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			case <-exited:
				return
			}
			_ = cmd.Process.Kill()
		case <-exited:
		}
	}()

	resp, notifyErr, rpcErr := b.converse(client, req)
	client.Close()
	if rpcErr != nil {
		close(broke)
	}
	waitErr := cmd.Wait()
	close(exited)
	wg.Wait()

	fail := func(cause string, err error) (*rpc.CriuResp, error) {
		if ctx.Err() != nil {
			cause, err = "interrupted", ctx.Err()
		}
		e := &Error{Op: op, Cause: cause, Err: err}
		// A CRIU that died before it opened its log leaves none to name.
		if _, err := os.Stat(req.LogPath); req.LogPath != "" && err == nil {
			e.Log = cmp.Or(req.KeptLog, req.LogPath)
			e.Lines = LogErrors(req.LogPath, maxQuoted)
		}
		if len(e.Lines) == 0 && stderr.Len() > 0 {
			e.Lines = nonEmptyLines(stderr.String(), maxQuoted)
		}
		if e.Cause == "" {
			e.Cause = fmt.Sprintf("%s request failed", op)
			if len(e.Lines) > 0 {
				e.Cause = errorMessage(e.Lines[0])
			}
		}
		return resp, e
	}
	if rpcErr != nil {
		cause := rpcErr.Error()
		if waitErr != nil {
			cause = fmt.Sprintf("%v (%v)", waitErr, rpcErr)
		}
		return fail(cause, rpcErr)
	}
	if notifyErr != nil {
		return fail(notifyErr.Error(), notifyErr)
	}
	if !resp.GetSuccess() {
		// CRIU reports its first logged error, which on hosts without
		// CAP_SYS_RESOURCE is a harmless rlimit complaint.
		cause := resp.GetCrErrmsg()
		if isHarmless(cause) {
			cause = ""
		}
		var err error
		if n := resp.GetCrErrno(); n != 0 {
			err = unix.Errno(n)
		}
		return fail(cause, err)
	}
	return resp, nil
}

// converse sends the request and loops over notifications. A failed
// notification callback is returned as notifyErr: CRIU then rolls back and
// its final answer reports failure.
func (b *Binary) converse(conn *os.File, req Request) (resp *rpc.CriuResp, notifyErr, err error) {
	opts := req.Opts
	if req.Notify != nil {
		opts.NotifyScripts = proto.Bool(true)
	}
	msg := &rpc.CriuReq{Type: req.Type.Enum(), Opts: opts}
	buf := make([]byte, 64*1024)
	for {
		data, err := proto.Marshal(msg)
		if err != nil {
			return nil, notifyErr, fmt.Errorf("encode request: %w", err)
		}
		if _, err := conn.Write(data); err != nil {
			return nil, notifyErr, fmt.Errorf("send request: %w", err)
		}
		n, err := conn.Read(buf)
		if err != nil || n == 0 {
			if err == nil {
				err = io.EOF
			}
			return nil, notifyErr, fmt.Errorf("criu exited without answering: %w", err)
		}
		resp := new(rpc.CriuResp)
		if err := proto.Unmarshal(buf[:n], resp); err != nil {
			return nil, notifyErr, fmt.Errorf("decode response: %w", err)
		}
		if resp.GetType() != rpc.CriuReqType_NOTIFY {
			return resp, notifyErr, nil
		}
		ok := true
		if req.Notify != nil && notifyErr == nil {
			nt := resp.GetNotify()
			if err := req.Notify(nt.GetScript(), nt.GetPid()); err != nil {
				ok = false
				notifyErr = fmt.Errorf("%s: %w", nt.GetScript(), err)
			}
		}
		msg = &rpc.CriuReq{Type: rpc.CriuReqType_NOTIFY.Enum(), NotifySuccess: proto.Bool(ok)}
	}
}

// limitedBuffer keeps the first 64 KiB of what CRIU prints outside its log.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 64*1024 - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Len()
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func nonEmptyLines(s string, max int) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !isHarmless(l) {
			out = append(out, l)
		}
		if len(out) == max {
			break
		}
	}
	return out
}
