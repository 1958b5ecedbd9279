package frame

import "errors"

// Errors returned by Parse, one per drop reason so callers can count them.
var (
	ErrTruncated   = errors.New("frame: truncated header")
	ErrNotIP       = errors.New("frame: not IPv4 or IPv6")
	ErrNotUDP      = errors.New("frame: not UDP")
	ErrBadIPHeader = errors.New("frame: malformed IP header")
	ErrFragment    = errors.New("frame: IP fragment")
	ErrBadUDP      = errors.New("frame: UDP length does not fit the packet")
	ErrNoRoom      = errors.New("frame: buffer too small for headers and payload")
)
