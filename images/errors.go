package images

import "errors"

var (
	// ErrNotArchive means the input is neither gzip, zstd nor tar.
	ErrNotArchive = errors.New("not a checkpoint archive (gzip, zstd or tar)")
	// ErrCorrupt means the archive ended early or does not decode.
	ErrCorrupt = errors.New("archive truncated or corrupt")
	// ErrUnsafe means a member could write outside the destination or is
	// of a type that crtool never writes (links, devices, fifos).
	ErrUnsafe = errors.New("unsafe archive member")
	// ErrLimit means extraction went over ExtractOptions.MaxBytes or MaxFiles.
	ErrLimit = errors.New("archive over extraction limit")
	// ErrStop, returned by a Walk callback, ends the walk early without error.
	ErrStop = errors.New("stop walking the archive")
)

// corruptError tells where reading the archive failed; it matches ErrCorrupt.
type corruptError struct {
	where string // "in <member>", "after <member>" or ""
	err   error
}

func (e *corruptError) Error() string {
	if e.where == "" {
		return ErrCorrupt.Error() + ": " + e.err.Error()
	}
	return ErrCorrupt.Error() + " " + e.where + ": " + e.err.Error()
}

func (e *corruptError) Unwrap() error { return e.err }

func (e *corruptError) Is(target error) bool { return target == ErrCorrupt }
