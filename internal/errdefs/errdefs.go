// Package errdefs defines the few classes of errors crtool's packages return, so that callers tell them apart with errors.Is and the command line maps each to one exit status.
package errdefs

import (
	"errors"
	"fmt"
	"strings"
)

// The classes. An error belongs to at most one; errors of none are plain
// failures of the operation.
var (
	// ErrUsage: the call does not fit: an option is missing, malformed or
	// does not apply to this container or archive. The message says what
	// to change.
	ErrUsage = errors.New("bad usage")
	// ErrNotFound: something the call names does not exist (a file, a
	// process, a namespace).
	ErrNotFound = errors.New("not found")
	// ErrInvalidArchive: the archive or image directory is not a usable
	// checkpoint: truncated, corrupt, hostile or incomplete.
	ErrInvalidArchive = errors.New("invalid checkpoint archive")
	// ErrConflict: the host's state stands in the way: a cgroup still
	// holds processes, a name or an address is taken.
	ErrConflict = errors.New("conflict with the host's state")
	// ErrUnsupported: the container uses something crtool cannot
	// checkpoint or restore.
	ErrUnsupported = errors.New("not supported")
	// ErrPrecondition: the host lacks what crtool needs: root, a CRIU
	// binary recent enough.
	ErrPrecondition = errors.New("prerequisite missing")
)

// classed is an error with its own message that belongs to a class.
type classed struct {
	class error
	err   error
}

func (e *classed) Error() string   { return e.err.Error() }
func (e *classed) Unwrap() []error { return []error{e.err, e.class} }

// New returns an error with message msg of class: a sentinel for errors.Is
// that also matches its class.
func New(class error, msg string) error {
	return &classed{class: class, err: errors.New(msg)}
}

// Newf formats an error of class; %w wraps causes as fmt.Errorf does. The
// class does not show in the message.
func Newf(class error, format string, args ...any) error {
	return &classed{class: class, err: fmt.Errorf(format, args...)}
}

// optionText is an error, or a hint after one, that names an option of the
// call by its Options field, so that a command line can name its flag.
type optionText struct {
	err           error  // nil for an error that is only the text
	before, after string // the text around the option's name
	option        string // the Options field: "CreateBridge"
	class         error
}

func (e *optionText) text(name string) string { return e.before + name + e.after }

func (e *optionText) Error() string {
	if e.err == nil {
		return e.text(e.option)
	}
	return e.err.Error() + ": " + e.text(e.option)
}

func (e *optionText) Unwrap() []error {
	var out []error
	for _, err := range []error{e.err, e.class} {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// Option returns an error of class whose message is the option's name (an
// Options field) followed by after: Option(ErrUsage, "PID", " is required").
func Option(class error, option, after string) error {
	return &optionText{option: option, after: after, class: class}
}

// Hint adds to err a way out that names an option (an Options field):
// Hint(err, "pass ", "CreateBridge", " to create it").
func Hint(err error, before, option, after string) error {
	return &optionText{err: err, before: before, option: option, after: after}
}

// Render is err's message with every option named by name(option) instead
// of its Options field.
func Render(err error, name func(option string) string) string {
	msg := err.Error()
	walk(err, func(o *optionText) {
		msg = strings.ReplaceAll(msg, o.text(o.option), o.text(name(o.option)))
	})
	return msg
}

func walk(err error, fn func(*optionText)) {
	if err == nil {
		return
	}
	// walk visits every error of the chain itself, so it looks at each
	// one's own type rather than searching the chain with errors.As.
	if o, ok := err.(*optionText); ok { //nolint:errorlint
		fn(o)
	}
	switch u := err.(type) { //nolint:errorlint // see above
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), fn)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walk(e, fn)
		}
	}
}
