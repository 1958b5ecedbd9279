package dataplane

import (
	"fmt"

	"github.com/mdfast/mdfast/internal/frame"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// Counter indexes a worker counter: packet and octet totals first, then one
// drop counter per Reason.
type Counter uint16

// Totals.
const (
	// RxPackets and RxBytes count datagrams (UDP payloads) received.
	RxPackets Counter = iota
	RxBytes
	// TxPackets and TxBytes count datagrams handed to the kernel or NIC.
	TxPackets
	TxBytes
	// Forwarded counts received media packets sent to at least one
	// receiver.
	Forwarded
	// SlowPath counts datagrams handed to the slow path.
	SlowPath
	// SlowMedia counts RTP/RTCP that reached the slow-path kernel socket in
	// an XDP mode (no AF_XDP socket on the packet's queue); dropped.
	SlowMedia
	// Rebased counts copies sealed under a re-based index (SEQ rewritten,
	// the original kept in the OHB for the double profiles): the SSRC was
	// sent to that receiver under an earlier owner. Counted per receiver.
	Rebased
	// Handovers counts senders' receive state (their Opener: ROC and
	// replay windows) this worker took over from another worker, or from
	// a stopped one (see handover.go).
	Handovers
	// HandoverRequests counts the requests this worker sent to the worker
	// owning a sender whose packets reached it (at most one per sender per
	// handoverRetry).
	HandoverRequests
	// HandoversParked counts receive states this worker left for the other
	// workers when it stopped.
	HandoversParked
	// HandoverMailboxFull counts requests this worker could not leave in
	// the owner's mailbox (mailboxRequests waiting): the sender's packets
	// stay dropped as misrouted and it asks again after handoverRetry.
	HandoverMailboxFull
	// HandoversDeferred counts hand-over requests this worker kept to
	// answer later: it had opened a packet of the sender less than
	// handoverQuiet before (a refreshed request is not counted again).
	HandoversDeferred
	// XDPPollSleeps counts the times an AF_XDP worker found its RX ring
	// empty and went to sleep in poll (a packet that arrives then waits
	// for the kernel to wake the worker; poll returns at once if one came
	// in between); XDPSpinCatches the times its spin (WaitAdaptive,
	// WaitSpin) found packets without going to poll.
	XDPPollSleeps
	XDPSpinCatches
	// LinkRx counts packets from peer Media Distributors' links that
	// opened (see link.go); LinkTx copies sent on links. Per link they
	// are in keytable.LinkStats.
	LinkRx
	LinkTx
	numTotals
)

// Reason is a drop reason. Each has a Counter.
type Reason = Counter

// Drop reasons.
const (
	_ Reason = numTotals + iota
	// DropFrameTruncated .. DropFrameBadUDP: frame.Parse errors (AF_XDP).
	DropFrameTruncated
	DropFrameNotIP
	DropFrameNotUDP
	DropFrameBadIP
	// DropFrameFragment: IP-fragmented media, dropped in every mode (see
	// fragmentedMedia): an IP fragment frame (AF_XDP, which the classifier
	// never redirects) or RTP/RTCP the kernel reassembled (socket mode's
	// workers, the XDP modes' slow-path socket).
	DropFrameFragment
	DropFrameBadUDP
	// DropFrameBad: a descriptor outside the UMEM (should not happen).
	DropFrameBad
	// DropTruncated: a datagram larger than the receive buffer.
	DropTruncated
	// DropEmpty: an empty UDP payload.
	DropEmpty
	// DropJunk: a first octet of no class the MD accepts (RFC 7983).
	DropJunk
	// DropUnknownSource: no association for the source address.
	DropUnknownSource
	// DropMisrouted: another worker holds the sender's receive state (its
	// flow moved to this queue); dropped until the hand-over completes.
	DropMisrouted
	// DropNoKeys: the sender has no receive keys yet.
	DropNoKeys
	// DropMalformed: an SRTP/SRTCP header or length error (short,
	// version, CSRC or extension overflow, padding).
	DropMalformed
	// DropAuth: the HBH tag did not verify.
	DropAuth
	// DropReplay: the packet index was already accepted.
	DropReplay
	// DropTooOld: the index is older than the replay window.
	DropTooOld
	// DropUnknownMKI: the MKI is not the sender's.
	DropUnknownMKI
	// DropSSRCLimit: the sender uses more SSRCs than an Opener tracks.
	DropSSRCLimit
	// DropBadOHB: a malformed RFC 8723 Original Header Block.
	DropBadOHB
	// DropEKTField: an SRTP packet of a double-profile sender whose
	// trailing EKTField (RFC 8870 section 4.1) is missing or malformed.
	DropEKTField
	// DropIndexExhausted: the SRTP/SRTCP index space is used up.
	DropIndexExhausted
	// DropSSRCCollision: the packet was refused by the key table's SSRC
	// claims: the SSRC is claimed by another association, the sender holds
	// its budget of SSRCs, or the index is too old for a re-based SSRC
	// (keytable.Stats says which).
	DropSSRCCollision
	// DropSSRCIndex: a copy whose re-based index would leave the SRTP or
	// SRTCP index space. Counted per receiver.
	DropSSRCIndex
	// DropNoReceivers: the sender's conference has nobody else.
	DropNoReceivers
	// DropNoNeighbour: no next-hop MAC for a receiver yet (AF_XDP); a
	// resolution was requested. Counted per receiver.
	DropNoNeighbour
	// DropNoSource: no source address of the receiver's family (AF_XDP).
	DropNoSource
	// DropTooBig: the sealed packet does not fit a TX buffer.
	DropTooBig
	// DropSeal: sealing failed. Counted per receiver.
	DropSeal
	// DropTxFull: no free TX frame or no room in the TX ring. Counted per
	// outgoing datagram.
	DropTxFull
	// DropTxError: the kernel refused a datagram (sendmmsg error).
	DropTxError
	// DropRxError: a receive error that was not fatal.
	DropRxError
	// DropSlowFull: the slow-path queue was full (or there is none).
	DropSlowFull
	// DropLinkNoTag: an RTP packet from a peer Media Distributor's media
	// address without CSRCs (so without a conference tag), or an RTCP one
	// too short for its tag.
	DropLinkNoTag
	// DropLinkUnknownTag: a packet from a peer Media Distributor's media
	// address whose tag names no link association there.
	DropLinkUnknownTag
	// DropLinkCSRCFull: a copy for a link of an RTP packet with 15 CSRCs,
	// which leaves no room for the tag. Counted per link.
	DropLinkCSRCFull
	// NumCounters is the number of counters.
	NumCounters
)

var counterNames = [NumCounters]string{
	RxPackets: "rx_packets", RxBytes: "rx_bytes", TxPackets: "tx_packets", TxBytes: "tx_bytes",
	Forwarded: "forwarded", SlowPath: "slow_path", SlowMedia: "slow_media", Rebased: "rebased",
	Handovers: "handovers", HandoverRequests: "handover_requests", HandoversParked: "handovers_parked",
	HandoverMailboxFull: "handover_mailbox_full", HandoversDeferred: "handovers_deferred",
	DropMisrouted: "drop_misrouted",
	XDPPollSleeps: "xdp_poll_sleeps", XDPSpinCatches: "xdp_spin_catches",
	DropFrameTruncated: "drop_frame_truncated", DropFrameNotIP: "drop_frame_not_ip",
	DropFrameNotUDP: "drop_frame_not_udp", DropFrameBadIP: "drop_frame_bad_ip",
	DropFrameFragment: "drop_frame_fragment", DropFrameBadUDP: "drop_frame_bad_udp",
	DropFrameBad: "drop_frame_bad_descriptor", DropTruncated: "drop_truncated",
	DropEmpty: "drop_empty", DropJunk: "drop_junk", DropUnknownSource: "drop_unknown_source",
	DropNoKeys: "drop_no_keys", DropMalformed: "drop_malformed", DropAuth: "drop_auth",
	DropReplay: "drop_replay", DropTooOld: "drop_too_old", DropUnknownMKI: "drop_unknown_mki",
	DropSSRCLimit: "drop_ssrc_limit", DropBadOHB: "drop_bad_ohb", DropEKTField: "drop_ekt_field",
	DropIndexExhausted: "drop_index_exhausted", DropSSRCCollision: "drop_ssrc_collision",
	DropSSRCIndex:   "drop_ssrc_index",
	DropNoReceivers: "drop_no_receivers", DropNoNeighbour: "drop_no_neighbour",
	DropNoSource: "drop_no_source", DropTooBig: "drop_too_big", DropSeal: "drop_seal",
	DropTxFull: "drop_tx_full", DropTxError: "drop_tx_error", DropRxError: "drop_rx_error",
	DropSlowFull: "drop_slow_full",
	LinkRx:       "link_rx", LinkTx: "link_tx",
	DropLinkNoTag: "drop_link_no_tag", DropLinkUnknownTag: "drop_link_unknown_tag",
	DropLinkCSRCFull: "drop_link_csrc_full",
}

// String returns the metric-style name, e.g. "drop_auth".
func (c Counter) String() string {
	if c < NumCounters && counterNames[c] != "" {
		return counterNames[c]
	}
	return fmt.Sprintf("counter(%d)", uint16(c))
}

// IsDrop reports whether c is a drop reason.
func (c Counter) IsDrop() bool { return c > numTotals && c < NumCounters }

// Counts is one worker's counters, written only by that worker (and by its
// Port, on the worker's goroutine).
type Counts [NumCounters]uint64

// Stats is a snapshot of counters, indexed by Counter.
type Stats [NumCounters]uint64

// Add adds o to s.
func (s *Stats) Add(o *Stats) {
	for i := range s {
		s[i] += o[i]
	}
}

// NonZero returns the counters that are not zero, by name (Counter.String).
func (s *Stats) NonZero() map[string]uint64 {
	m := map[string]uint64{}
	for c := Counter(0); c < NumCounters; c++ {
		if s[c] != 0 {
			m[c.String()] = s[c]
		}
	}
	return m
}

// Drops returns the sum of all drop counters.
func (s *Stats) Drops() uint64 {
	var n uint64
	for c := numTotals + 1; c < NumCounters; c++ {
		n += s[c]
	}
	return n
}

// openReason maps an srtpfast per-packet error to its drop reason.
func openReason(err error) Reason {
	e, _ := err.(srtpfast.Error)
	switch e {
	case srtpfast.ErrAuth:
		return DropAuth
	case srtpfast.ErrReplay:
		return DropReplay
	case srtpfast.ErrTooOld:
		return DropTooOld
	case srtpfast.ErrUnknownMKI:
		return DropUnknownMKI
	case srtpfast.ErrSSRCLimit:
		return DropSSRCLimit
	case srtpfast.ErrOHB:
		return DropBadOHB
	case srtpfast.ErrIndexExhausted:
		return DropIndexExhausted
	}
	return DropMalformed
}

// parseReason maps a frame.Parse error to its drop reason.
func parseReason(err error) Reason {
	switch err {
	case frame.ErrTruncated:
		return DropFrameTruncated
	case frame.ErrNotIP:
		return DropFrameNotIP
	case frame.ErrNotUDP:
		return DropFrameNotUDP
	case frame.ErrBadIPHeader:
		return DropFrameBadIP
	case frame.ErrFragment:
		return DropFrameFragment
	}
	return DropFrameBadUDP
}
