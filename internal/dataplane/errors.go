package dataplane

import "errors"

var (
	// ErrClosed is returned by the methods of a closed Dataplane.
	ErrClosed = errors.New("dataplane: closed")
	// ErrNoSlowSocket is returned by SendSlow for a port the Dataplane
	// does not serve.
	ErrNoSlowSocket = errors.New("dataplane: no socket for that media port")
)
