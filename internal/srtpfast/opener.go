package srtpfast

// MaxSSRCs bounds the maxSSRCs argument of NewOpener.
const MaxSSRCs = 1 << 16

// Scratch is per-worker scratch space for one packet operation: the AES-GCM
// nonce and the SRTCP additional data. It exists because cipher.AEAD is an
// interface, so a nonce held in a local array would escape to the heap on
// every call; keeping it in a long-lived per-worker value makes Seal
// allocation-free. The zero value is ready to use. A Scratch holds no state
// between calls, but must not be used by two goroutines at once: give each
// worker its own (an Opener carries one for its own use).
type Scratch struct {
	iv  [saltLen]byte
	aad [rtcpHdrLen + srtcpIdxLen]byte
}

// Opener is the receive state for one direction of one association: for
// each SSRC the sender uses, the highest SRTP packet index (from which the
// ROC is estimated, RFC 3711 appendix A) with a replay window of
// ReplayWindow packets, and the highest SRTCP index with its own window.
//
// An Opener is owned by exactly one worker goroutine and is not safe for
// concurrent use. There must be exactly one Opener per Keys used for
// receiving, for the whole life of the Keys: the replay windows are what
// guarantee that each packet is opened, and therefore re-sealed, only once
// (see the package documentation). To move an association to another
// worker, hand over the Opener itself.
//
// State for an SSRC is created only after a packet from it authenticates, and
// at most maxSSRCs states exist; they are never evicted.
type Opener struct {
	keys   *Keys
	mkiLen int
	double bool
	table  ssrcTable
	sc     Scratch
}

// NewOpener returns the receive state for packets protected with k, tracking
// at most maxSSRCs SSRCs (clamped to [1, MaxSSRCs]). It starts with room
// for two SSRCs and grows when a new SSRC authenticates; opening a packet
// of a known SSRC never allocates.
func NewOpener(k *Keys, maxSSRCs int) *Opener {
	maxSSRCs = min(max(maxSSRCs, 1), MaxSSRCs)
	return &Opener{
		keys:   k,
		mkiLen: len(k.mki),
		double: k.profile.IsDouble(),
		table:  newSSRCTable(maxSSRCs),
	}
}

// Keys returns the keys o opens with.
func (o *Opener) Keys() *Keys { return o.keys }

// NumSSRCs returns the number of SSRCs o holds state for.
func (o *Opener) NumSSRCs() int { return len(o.table.states) }
