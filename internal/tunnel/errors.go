package tunnel

import (
	"errors"
	"fmt"
)

// Decoding errors. A *DecodeError wraps exactly one of these, so callers
// branch with errors.Is.
var (
	// ErrTruncated: the input ends before the header or before the end of
	// the body announced by the header.
	ErrTruncated = errors.New("tunnel: truncated message")
	// ErrReservedType: msg_type is 0x00 or in 0x06-0xFF (reserved, section 8).
	ErrReservedType = errors.New("tunnel: reserved or unknown message type")
	// ErrBodyLength: the body is shorter than the structure of its type
	// requires (a fixed field or a vector runs past the end of the body).
	ErrBodyLength = errors.New("tunnel: body length does not match the message structure")
	// ErrVectorLength: a vector length is outside the bounds of its
	// declaration (for example an empty SRTP master key, or an odd-length
	// protection profile list).
	ErrVectorLength = errors.New("tunnel: vector length out of bounds")
	// ErrTrailingBytes: octets remain after the structure inside the body, or
	// after the frame in the input.
	ErrTrailingBytes = errors.New("tunnel: trailing bytes")
	// ErrFrameTooLarge: a frame or an encoded message exceeds the size limit
	// (the configured maximum frame size, or the uint16 body length).
	ErrFrameTooLarge = errors.New("tunnel: frame exceeds size limit")
)

// Encoding errors.
var (
	// ErrNotSendable: the message is valid under draft -05 but RFC 9185
	// forbids sending it (an empty protection profile list or an empty
	// dtls_message). Such messages are accepted when received.
	ErrNotSendable = errors.New("tunnel: message not sendable under RFC 9185")
)

// Lifecycle and protocol errors.
var (
	// ErrQueueFull: the tunnel's send queue is full (the peer is not reading
	// fast enough). The message was not queued; the tunnel stays up.
	ErrQueueFull = errors.New("tunnel: send queue full")
	// ErrClosed: the tunnel, MD or KD is closed.
	ErrClosed = errors.New("tunnel: closed")
	// ErrNoTunnel: the MD has no live tunnel to send on.
	ErrNoTunnel = errors.New("tunnel: no live tunnel")
	// ErrProtocol: the peer sent a message that is well formed but not
	// allowed at this point (for example a second, different
	// SupportedProfiles, or MediaKeys sent to a KD).
	ErrProtocol = errors.New("tunnel: protocol violation")
	// ErrUnauthorizedPeer: the peer's certificate is missing, does not chain
	// to the configured CA, or is not on the pin/allow list.
	ErrUnauthorizedPeer = errors.New("tunnel: unauthorized peer")
	// ErrIdleTimeout: nothing was received on the tunnel for the configured
	// idle timeout.
	ErrIdleTimeout = errors.New("tunnel: idle timeout")
	// ErrProfileNotOffered: the KD tried to send MediaKeys with a protection
	// profile the MD did not list in its SupportedProfiles.
	ErrProfileNotOffered = errors.New("tunnel: protection profile not offered by the media distributor")
	// ErrInvalidConfig: a configuration value is out of range.
	ErrInvalidConfig = errors.New("tunnel: invalid configuration")
)

// DecodeError describes why a frame was rejected. Err is one of the decoding
// sentinels above.
type DecodeError struct {
	Type  MsgType // the frame's msg_type octet (0 when the header was incomplete)
	Field string  // the field being decoded, "" for the header
	Err   error
}

// Error implements error.
func (e *DecodeError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("tunnel: decode %s: %v", e.Type, e.Err)
	}
	return fmt.Sprintf("tunnel: decode %s.%s: %v", e.Type, e.Field, e.Err)
}

// Unwrap returns the sentinel.
func (e *DecodeError) Unwrap() error { return e.Err }

// UnsupportedVersionError is returned (wrapped) when the KD answered the MD's
// SupportedProfiles with UnsupportedVersion. The MD uses Highest on its next
// connection attempt (section 5.5).
type UnsupportedVersionError struct {
	Sent    uint8 // the version the MD sent
	Highest uint8 // the highest version the KD supports
}

// Error implements error.
func (e *UnsupportedVersionError) Error() string {
	return fmt.Sprintf("tunnel: key distributor does not support version %d (highest supported: %d)", e.Sent, e.Highest)
}

func decodeErr(t MsgType, field string, err error) error {
	return &DecodeError{Type: t, Field: field, Err: err}
}

func encodeErr(t MsgType, field string, err error) error {
	return fmt.Errorf("tunnel: encode %s.%s: %w", t, field, err)
}
