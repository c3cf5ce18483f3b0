package netns

import "errors"

// Error classes for errors.Is; the returned errors name the object.
var (
	// ErrAddressInUse: an address to replay is configured elsewhere on the
	// same network.
	ErrAddressInUse = errors.New("address already in use")
	// ErrBridgeMissing: the bridge for a veth peer does not exist and
	// ReplayOptions.CreateBridge is not set.
	ErrBridgeMissing = errors.New("bridge not found")
	// ErrPeerExists: the veth peer name is taken in the peer namespace.
	ErrPeerExists = errors.New("peer name already in use")
)
