package dump

import "errors"

var (
	// ErrNoProcess means the PID does not exist.
	ErrNoProcess = errors.New("no such process")
	// ErrNotContainerInit means the PID is not the first process of a
	// container.
	ErrNotContainerInit = errors.New("not a container's init process")
	// ErrUnsupported means the container uses something crtool cannot dump.
	ErrUnsupported = errors.New("unsupported container setup")
	// ErrTCPEstablished means the container has established TCP
	// connections and the dump was not asked to keep them.
	ErrTCPEstablished = errors.New("the container has established TCP connections")
)
