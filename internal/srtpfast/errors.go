package srtpfast

import "errors"

// Error is a per-packet drop reason. Every error the hot-path methods
// (OpenRTP, OpenRTCP, SealRTP, SealRTCP, RewriteDouble) return is one of the
// Err* constants below, unwrapped, so a caller can count drops without
// allocating:
//
//	if e, ok := err.(srtpfast.Error); ok {
//		drops[e].Add(1) // drops [srtpfast.NumErrors]atomic.Uint64
//	}
//
// errors.Is works as well, since the values are comparable.
type Error uint8

// Drop reasons. The zero value is not an error.
const (
	// ErrShort: the packet is shorter than its fixed header, or too short to
	// hold the authentication tag, the SRTCP index word or the MKI.
	ErrShort Error = iota + 1
	// ErrVersion: the RTP/RTCP version field is not 2.
	ErrVersion
	// ErrCSRCOverflow: the CSRC count points past the end of the packet.
	ErrCSRCOverflow
	// ErrExtensionOverflow: the RTP header extension (its 4-octet header or
	// its declared length) runs past the end of the packet.
	ErrExtensionOverflow
	// ErrPadding: the P bit is set but the padding count is 0 or larger than
	// the decrypted payload (RFC 3550 section 5.1).
	ErrPadding
	// ErrAuth: the AES-GCM tag did not verify (wrong key, tampering, or a
	// wrong ROC guess). The packet buffer contents are unspecified after it.
	ErrAuth
	// ErrReplay: the packet index was already accepted (replay window hit).
	ErrReplay
	// ErrTooOld: the packet index is older than the replay window, or its
	// estimated ROC would be negative (a stale ROC).
	ErrTooOld
	// ErrUnknownMKI: the MKI in the packet is not the one of the Keys.
	ErrUnknownMKI
	// ErrSSRCLimit: the packet is from a new SSRC and the Opener already
	// tracks its maximum number of SSRCs.
	ErrSSRCLimit
	// ErrOHB: a double (RFC 8723) packet has a malformed Original Header
	// Block: reserved config bits set, or OHB plus inner tag longer than the
	// payload.
	ErrOHB
	// ErrIndexExhausted: the SRTP packet index (2^48) or the SRTCP index
	// (2^31) space is used up; the association must be rekeyed. Also returned
	// by SealRTCP for an index of 2^31 or more.
	ErrIndexExhausted
	// ErrOverlap: dst and pkt given to a Seal method overlap other than
	// exactly (dst must be pkt[:0] or not overlap pkt at all). A caller bug.
	ErrOverlap
	// ErrTailroom: RewriteDouble needs more capacity than the packet slice
	// has to grow the OHB (at most 3 octets), or the buffer given to
	// SealRTPHeader is shorter than the sealed packet. A caller bug.
	ErrTailroom

	// NumErrors is one more than the largest Error: size a counter array
	// with it.
	NumErrors = iota + 1
)

var errorText = [NumErrors]string{
	0:                    "srtpfast: no error",
	ErrShort:             "srtpfast: packet too short",
	ErrVersion:           "srtpfast: bad RTP/RTCP version",
	ErrCSRCOverflow:      "srtpfast: CSRC list past end of packet",
	ErrExtensionOverflow: "srtpfast: header extension past end of packet",
	ErrPadding:           "srtpfast: bad RTP padding",
	ErrAuth:              "srtpfast: authentication failed",
	ErrReplay:            "srtpfast: replayed packet",
	ErrTooOld:            "srtpfast: packet older than replay window",
	ErrUnknownMKI:        "srtpfast: unknown MKI",
	ErrSSRCLimit:         "srtpfast: too many SSRCs",
	ErrOHB:               "srtpfast: malformed original header block",
	ErrIndexExhausted:    "srtpfast: packet index space exhausted",
	ErrOverlap:           "srtpfast: dst overlaps pkt inexactly",
	ErrTailroom:          "srtpfast: not enough tailroom",
}

// Error returns a constant description; it never allocates.
func (e Error) Error() string {
	if int(e) < len(errorText) {
		return errorText[e]
	}
	return "srtpfast: unknown error"
}

// Errors returned by NewKeys (lifecycle, wrapped with context).
var (
	// ErrUnsupportedProfile: the profile is not one srtpfast implements.
	ErrUnsupportedProfile = errors.New("srtpfast: unsupported protection profile")
	// ErrKeyLength: a master key, salt or MKI has the wrong length.
	ErrKeyLength = errors.New("srtpfast: wrong key material length")
)
