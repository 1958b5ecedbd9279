package sdp

import (
	"errors"
	"fmt"
)

// What is wrong with an offer; callers map them to HTTP statuses and
// messages.
var (
	// ErrMalformed: not SDP, or beyond the package's limits.
	ErrMalformed = errors.New("malformed SDP")
	// ErrNoDTLS: an audio/video m-line without DTLS-SRTP.
	ErrNoDTLS = errors.New("offer without DTLS-SRTP")
	// ErrFingerprintHash: a certificate fingerprint with a hash other than
	// sha-256 and no sha-256 one.
	ErrFingerprintHash = errors.New("unsupported fingerprint hash")
	// ErrSetup: a=setup other than actpass or active.
	ErrSetup = errors.New("unsupported DTLS role")
	// ErrNoRTCPMux: an accepted m-line without a=rtcp-mux.
	ErrNoRTCPMux = errors.New("offer without rtcp-mux")
	// ErrBundle: no mids, accepted m-lines outside one BUNDLE group, or
	// bundled m-lines with different transports.
	ErrBundle = errors.New("offer without a usable BUNDLE group")
	// ErrICE: missing or invalid ICE credentials.
	ErrICE = errors.New("bad ICE credentials")
	// ErrNoMedia: no audio or video m-line the join endpoint can accept.
	ErrNoMedia = errors.New("no acceptable media")
)

// Error is a parse or check failure: the kind (one of the sentinels), the
// line it was found on (0 when it concerns the whole offer) and a message
// that names what is wrong without echoing much of the input.
type Error struct {
	Kind error
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%v: line %d: %s", e.Kind, e.Line, e.Msg)
	}
	return fmt.Sprintf("%v: %s", e.Kind, e.Msg)
}

// Unwrap returns the kind.
func (e *Error) Unwrap() error { return e.Kind }

func errorf(kind error, line int, format string, args ...any) *Error {
	return &Error{Kind: kind, Line: line, Msg: fmt.Sprintf(format, args...)}
}
