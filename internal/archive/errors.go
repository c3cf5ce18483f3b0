package archive

import (
	"errors"

	"github.com/crtool/crtool/internal/errdefs"
)

var (
	// ErrNotArchive means the input is neither gzip, zstd nor tar.
	ErrNotArchive = errdefs.New(errdefs.ErrInvalidArchive, "not a checkpoint archive (gzip, zstd or tar)")
	// ErrCorrupt means the archive ended early or does not decode.
	ErrCorrupt = errdefs.New(errdefs.ErrInvalidArchive, "archive truncated or corrupt")
	// ErrLimit means extraction went over ExtractOptions.MaxBytes or MaxFiles.
	ErrLimit = errdefs.New(errdefs.ErrInvalidArchive, "archive over extraction limit")
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

func (e *corruptError) Unwrap() []error { return []error{e.err, ErrCorrupt} }
