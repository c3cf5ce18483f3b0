package network

import (
	"github.com/crtool/crtool/internal/errdefs"
)

// Errors for errors.Is, all of class errdefs.ErrConflict; the returned
// errors name the object.
var (
	// ErrAddressInUse: an address to replay is configured elsewhere on the
	// same network.
	ErrAddressInUse = errdefs.New(errdefs.ErrConflict, "address already in use")
	// ErrBridgeMissing: the bridge for a veth peer does not exist and
	// ReplayOptions.CreateBridge is not set.
	ErrBridgeMissing = errdefs.New(errdefs.ErrConflict, "bridge not found")
	// ErrPeerExists: the veth peer name is taken in the peer namespace.
	ErrPeerExists = errdefs.New(errdefs.ErrConflict, "peer name already in use")
)
