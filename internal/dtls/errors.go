package dtls

import (
	"errors"
	"fmt"
)

// Alert descriptions (RFC 5246 section 7.2, RFC 8446 section 6.2).
const (
	AlertCloseNotify            uint8 = 0
	AlertUnexpectedMessage      uint8 = 10
	AlertBadRecordMAC           uint8 = 20
	AlertRecordOverflow         uint8 = 22
	AlertHandshakeFailure       uint8 = 40
	AlertBadCertificate         uint8 = 42
	AlertUnsupportedCertificate uint8 = 43
	AlertCertificateUnknown     uint8 = 46
	AlertIllegalParameter       uint8 = 47
	AlertAccessDenied           uint8 = 49
	AlertDecodeError            uint8 = 50
	AlertDecryptError           uint8 = 51
	AlertProtocolVersion        uint8 = 70
	AlertInsufficientSecurity   uint8 = 71
	AlertInternalError          uint8 = 80
	AlertNoRenegotiation        uint8 = 100
	AlertUnsupportedExtension   uint8 = 110
)

// Alert levels.
const (
	alertLevelWarning uint8 = 1
	alertLevelFatal   uint8 = 2
)

// AlertError is a fatal alert, sent (Remote false) or received (Remote
// true). Err, when not nil, says why it was sent. Branch on it with
// errors.As.
type AlertError struct {
	Description uint8
	Remote      bool
	Err         error
}

func (e *AlertError) Error() string {
	who := "sent"
	if e.Remote {
		who = "received"
	}
	if e.Err != nil {
		return fmt.Sprintf("dtls: %s alert %s: %v", who, alertName(e.Description), e.Err)
	}
	return fmt.Sprintf("dtls: %s alert %s", who, alertName(e.Description))
}

func (e *AlertError) Unwrap() error { return e.Err }

// alertf builds the local fatal alert desc with a reason.
func alertf(desc uint8, format string, args ...any) *AlertError {
	return &AlertError{Description: desc, Err: fmt.Errorf(format, args...)}
}

// Alert returns an error that, returned by a Config hook, makes the Conn
// fail with the fatal alert desc; err says why (it is wrapped).
func Alert(desc uint8, err error) error { return &AlertError{Description: desc, Err: err} }

func alertName(d uint8) string {
	switch d {
	case AlertCloseNotify:
		return "close_notify"
	case AlertUnexpectedMessage:
		return "unexpected_message"
	case AlertBadRecordMAC:
		return "bad_record_mac"
	case AlertRecordOverflow:
		return "record_overflow"
	case AlertHandshakeFailure:
		return "handshake_failure"
	case AlertBadCertificate:
		return "bad_certificate"
	case AlertUnsupportedCertificate:
		return "unsupported_certificate"
	case AlertCertificateUnknown:
		return "certificate_unknown"
	case AlertIllegalParameter:
		return "illegal_parameter"
	case AlertAccessDenied:
		return "access_denied"
	case AlertDecodeError:
		return "decode_error"
	case AlertDecryptError:
		return "decrypt_error"
	case AlertProtocolVersion:
		return "protocol_version"
	case AlertInsufficientSecurity:
		return "insufficient_security"
	case AlertInternalError:
		return "internal_error"
	case AlertNoRenegotiation:
		return "no_renegotiation"
	case AlertUnsupportedExtension:
		return "unsupported_extension"
	}
	return fmt.Sprintf("alert(%d)", d)
}

// Errors callers branch on.
var (
	// ErrClosed: the Conn has ended (closed, failed or timed out).
	ErrClosed = errors.New("dtls: connection closed")
	// ErrTimeout: the peer did not answer a flight (or an EKTKey) within
	// the retransmissions allowed.
	ErrTimeout = errors.New("dtls: peer did not answer after the last retransmission")
	// ErrPeerClosed: the peer sent close_notify.
	ErrPeerClosed = errors.New("dtls: peer sent close_notify")
	// ErrNotEstablished: an operation that needs the handshake done.
	ErrNotEstablished = errors.New("dtls: handshake not complete")
	// ErrNoEKT: SendEKTKey on a connection that negotiated no EKT cipher.
	ErrNoEKT = errors.New("dtls: no EKT cipher negotiated")
	// ErrConfig: an invalid Config.
	ErrConfig = errors.New("dtls: invalid configuration")
)
