package rootfs

import "errors"

var (
	// ErrUnsafe means a path in the changes (a tar member, a link target or
	// a deleted path) would lead outside the root filesystem, through a
	// symlink, or to a file the tar did not create itself.
	ErrUnsafe = errors.New("unsafe path")
	// ErrUnsupported means the input uses a feature this package does not
	// handle: a tar member type, an overlayfs redirect or metacopy, or a
	// device node when not running as root.
	ErrUnsupported = errors.New("unsupported")
)
