package afxdp

import "errors"

var (
	// ErrClosed is returned by the methods of a closed Socket.
	ErrClosed = errors.New("afxdp: socket closed")
	// ErrBadDescriptor is returned by Transmit for a descriptor that is
	// outside the UMEM, crosses its frame, or names a frame the caller
	// does not own (never received, already recycled or transmitted).
	ErrBadDescriptor = errors.New("afxdp: bad descriptor")
	// ErrZeroCopyUnsupported is returned by Open in ModeZeroCopy when the
	// driver cannot bind the queue in zero-copy mode.
	ErrZeroCopyUnsupported = errors.New("afxdp: zero-copy not supported on this queue")
)
