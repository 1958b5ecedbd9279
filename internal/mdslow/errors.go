package mdslow

import (
	"errors"
	"fmt"
)

// ErrSTUN is wrapped by every STUN parse or check error.
var ErrSTUN = errors.New("mdslow: bad STUN message")

// ErrClosed is returned by a Relay that has stopped.
var ErrClosed = errors.New("mdslow: relay closed")

// STUNError says which part of a STUN message was bad.
type STUNError struct {
	Field  string
	Reason string
}

func (e *STUNError) Error() string { return fmt.Sprintf("mdslow: STUN %s: %s", e.Field, e.Reason) }

// Unwrap returns ErrSTUN.
func (e *STUNError) Unwrap() error { return ErrSTUN }

func stunErr(field, reason string) error { return &STUNError{Field: field, Reason: reason} }

// ErrNoTunnel: no tunnel to a key distributor was set.
var ErrNoTunnel = errors.New("mdslow: no tunnel to a key distributor")
