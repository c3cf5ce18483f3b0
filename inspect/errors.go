package inspect

import (
	"errors"
	"fmt"
)

var (
	// ErrCorruptImage means a CRIU image does not decode.
	ErrCorruptImage = errors.New("corrupt CRIU image")
	// ErrCorruptMetadata means a JSON member (config.dump, crtool.json, ...)
	// does not decode.
	ErrCorruptMetadata = errors.New("corrupt metadata")
	// ErrMissing means a member that the checkpoint must have is not there.
	ErrMissing = errors.New("missing from the checkpoint")
	// ErrTooLarge means a member is larger than inspect reads into memory.
	ErrTooLarge = errors.New("too large to inspect")
	// ErrNotCheckpoint means a directory is neither an unpacked archive
	// nor a CRIU image directory.
	ErrNotCheckpoint = errors.New("not a checkpoint")
	// ErrNoProcess means --pid names a process that is not in the dump.
	ErrNoProcess = errors.New("no such process in the checkpoint")
)

// MemberError names the member of the archive (or file of the directory)
// that a problem was found in, by its archive name ("checkpoint/core-1.img").
type MemberError struct {
	Member string
	Err    error
}

func (e *MemberError) Error() string { return e.Member + ": " + e.Err.Error() }

func (e *MemberError) Unwrap() error { return e.Err }

func memberErr(member string, err error) error {
	return &MemberError{Member: member, Err: err}
}

func corruptImage(member, format string, args ...any) error {
	return memberErr(member, fmt.Errorf("%w: %s", ErrCorruptImage, fmt.Sprintf(format, args...)))
}
