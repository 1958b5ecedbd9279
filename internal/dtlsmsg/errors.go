package dtlsmsg

import "errors"

// Record layer errors (NextRecord). They are returned unwrapped, so that
// reading records never allocates.
var (
	// ErrNotDTLS: the first octet is outside 20..63, the DTLS range of the
	// RFC 7983 demultiplexing rules.
	ErrNotDTLS = errors.New("dtlsmsg: not a DTLS record")
	// ErrUnsupportedRecord: a DTLS record whose header length cannot be
	// known without connection state: a tls12_cid record (content type 25,
	// RFC 9146) or a DTLS 1.3 unified header (first octet 001xxxxx). Such
	// records are never plaintext handshake records.
	ErrUnsupportedRecord = errors.New("dtlsmsg: record with connection ID or DTLS 1.3 unified header")
	// ErrShortRecord: the datagram ends inside a record header or before the
	// end of the record fragment its length announces.
	ErrShortRecord = errors.New("dtlsmsg: truncated record")
	// ErrBadVersion: the protocol version is not a DTLS version (major octet
	// other than 0xFE).
	ErrBadVersion = errors.New("dtlsmsg: not a DTLS protocol version")
)

// Handshake and message errors.
var (
	// ErrShortHandshake: a record fragment ends inside a handshake header or
	// before the end of the handshake fragment its header announces.
	ErrShortHandshake = errors.New("dtlsmsg: truncated handshake fragment")
	// ErrBadFragment: a handshake fragment lies outside its message
	// (fragment_offset+fragment_length > length), contradicts an earlier
	// fragment of the same message (different length, or different octets
	// where they overlap), or an unfragmented message was expected.
	ErrBadFragment = errors.New("dtlsmsg: inconsistent handshake fragment")
	// ErrTooLarge: a handshake message is longer than the configured
	// maximum; it is not buffered.
	ErrTooLarge = errors.New("dtlsmsg: handshake message too large")
	// ErrNotClientHello: the handshake message is not a ClientHello.
	ErrNotClientHello = errors.New("dtlsmsg: not a ClientHello")
	// ErrNotServerHello: the handshake message is not a ServerHello.
	ErrNotServerHello = errors.New("dtlsmsg: not a ServerHello")
	// ErrBadLength: a length inside a hello message is outside the bounds of
	// its declaration or does not match the octets present: a vector runs
	// past the end of the message, a session_id longer than 32, an empty or
	// odd-length cipher_suites, no compression method, octets after the
	// extensions, an extension running past the extensions block.
	ErrBadLength = errors.New("dtlsmsg: bad length in hello message")
	// ErrDuplicateExtension: an extension type appears more than once in one
	// hello message (forbidden by RFC 5246 section 7.4.1.4).
	ErrDuplicateExtension = errors.New("dtlsmsg: duplicate extension")
	// ErrBadExternalSessionID: an external_session_id extension is present
	// but malformed: its session_id is shorter than 20 or longer than 255
	// octets, or the extension_data has octets before or after it. This is
	// distinct from an absent extension (HasExternalSessionID false).
	ErrBadExternalSessionID = errors.New("dtlsmsg: malformed external_session_id extension")
	// ErrBadUseSRTP: a use_srtp extension is present but malformed: an empty
	// or odd-length profile list, a vector running past the extension, or
	// octets after srtp_mki; in a ServerHello, other than exactly one
	// profile.
	ErrBadUseSRTP = errors.New("dtlsmsg: malformed use_srtp extension")
)
