package dataplane

import "errors"

var (
	// ErrClosed is returned by the methods of a closed Dataplane.
	ErrClosed = errors.New("dataplane: closed")
	// ErrNoSlowSocket is returned by SendSlow for a port the Dataplane
	// does not serve.
	ErrNoSlowSocket = errors.New("dataplane: no socket for that media port")
	// ErrBadAddress is returned by SendSlow for a destination the socket
	// cannot reach (an IPv6 address from an IPv4 socket).
	ErrBadAddress = errors.New("dataplane: address of the wrong family")
)
