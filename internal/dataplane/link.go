package dataplane

// The hop between two Media Distributors (issue 14, RFC 8871 section
// 4.5.1). A peer MD is a receiver like any other: one link association per
// (peer MD, conference), with its own hop keys, installed by the link
// manager (internal/cascade). All of a peer's link associations share its
// media address, so a packet on the hop says which conference it belongs
// to with the conference's tag (cascade.Tag of its name, never 0):
//
//   - SRTP: the tag is ONE extra CSRC after the packet's own (CC+1). The
//     header is the outer AEAD's additional data, so the tag is
//     authenticated. The receiving MD reads the last CSRC before opening,
//     picks the link by (peer address, tag), opens, and removes the CSRC
//     again (CC-1) by moving the header's first 12+4(CC-1) octets 4
//     octets forward: the local members get the original header octet for
//     octet. A packet with 15 CSRCs has no room for the tag: its copy for
//     a link is dropped and counted (DropLinkCSRCFull), the local members
//     still get it.
//   - SRTCP: the tag is 4 octets after the SRTCP packet (after the
//     authentication tag). It is not authenticated and needs not be: it
//     only selects the keys, every conference's link has its own, so a
//     changed tag selects keys the packet fails to authenticate under (or
//     none: DropLinkUnknownTag). The SRTCP packet itself is sealed exactly
//     as for a local receiver, under the index the key table gives the
//     link for the sender's SSRC, so the nonce argument of keytable's
//     doc.go covers it unchanged (a link is a receiver key like any
//     other; as a sender it is one association whose claims are the
//     remote senders' SSRCs).
//
// What came from a link is forwarded only to local members, never to
// another link: with a full mesh of links, each packet crosses each link
// at most once and nothing loops. Double profiles (RFC 8723) need nothing
// more: the link keys are double-profile keys whose outer half is the hop
// key, so the EKTField is carried and the OHB kept by the generic code
// (RewriteDouble records an original only when the OHB has none, so a
// second MD that re-bases keeps the first MD's originals).

import (
	"encoding/binary"

	"github.com/mdfast/mdfast/internal/keytable"
)

// linkTagLen is what a packet grows by on a link: the tag, one CSRC or one
// trailing word.
const linkTagLen = 4

// rtpLinkTag returns the conference tag of an SRTP packet from a link: its
// last CSRC. reason is DropLinkNoTag when it has no CSRC, DropMalformed
// when it is too short for the CSRCs it claims.
func rtpLinkTag(b []byte) (tag uint32, reason Reason) {
	if len(b) < 12 {
		return 0, DropMalformed
	}
	cc := int(b[0] & 0x0f)
	if cc == 0 {
		return 0, DropLinkNoTag
	}
	end := 12 + 4*cc
	if len(b) < end {
		return 0, DropMalformed
	}
	return binary.BigEndian.Uint32(b[end-4:]), 0
}

// rtcpLinkTag splits the trailing tag off an SRTCP packet from a link. The
// packet left must still hold an RTCP header (8 octets); DropLinkNoTag
// otherwise.
func rtcpLinkTag(b []byte) (srtcp []byte, tag uint32, reason Reason) {
	if len(b) < 8+linkTagLen {
		return nil, 0, DropLinkNoTag
	}
	n := len(b) - linkTagLen
	return b[:n], binary.BigEndian.Uint32(b[n:]), 0
}

// stripLinkTag removes the last CSRC (the tag) from an opened RTP packet
// whose header the Opener validated (so it has at least one CSRC, as
// rtpLinkTag checked): the fixed header and the CSRCs before the tag move
// 4 octets forward, the rest stays in place. It returns the packet without
// the tag, starting 4 octets into pkt.
func stripLinkTag(pkt []byte) []byte {
	cc := int(pkt[0] & 0x0f)
	off := 12 + 4*(cc-1)
	copy(pkt[linkTagLen:off+linkTagLen], pkt[:off])
	out := pkt[linkTagLen:]
	out[0] = out[0]&^0x0f | byte(cc-1)
	return out
}

// insertLinkTag writes into dst (which must have room for len(pkt)+4
// octets) the plaintext RTP packet pkt with tag appended to its CSRCs. pkt
// must have fewer than 15 CSRCs and a valid header (it was opened).
func insertLinkTag(dst, pkt []byte, tag uint32) []byte {
	cc := int(pkt[0] & 0x0f)
	off := 12 + 4*cc
	out := dst[:len(pkt)+linkTagLen]
	copy(out, pkt[:off])
	binary.BigEndian.PutUint32(out[off:], tag)
	copy(out[off+linkTagLen:], pkt[off:])
	out[0] = pkt[0]&^0x0f | byte(cc+1)
	return out
}

// linkAcc is one link's traffic in the current batch. A worker adds to its
// own accumulators per packet (plain words, no atomics) and hands them to
// the link association once per batch (flushLinks): per link and batch one
// atomic add per non-zero counter, however many packets the batch carried.
type linkAcc struct {
	p *Peer
	d keytable.LinkStats
}

// maxLinkAccs bounds the links a worker accumulates for at once; one more
// flushes them first (a batch rarely carries that many).
const maxLinkAccs = 32

// linkStats returns this batch's accumulator for link p.
func (w *Worker) linkStats(p *Peer) *keytable.LinkStats {
	for i := range w.links {
		if w.links[i].p == p {
			return &w.links[i].d
		}
	}
	if len(w.links) == cap(w.links) {
		w.flushLinks()
	}
	w.links = append(w.links, linkAcc{p: p})
	return &w.links[len(w.links)-1].d
}

// flushLinks adds the batch's per-link traffic to the link associations.
func (w *Worker) flushLinks() {
	for i := range w.links {
		if l := &w.links[i]; l.p.Traffic != nil {
			l.p.Traffic.AddLinkTraffic(l.d)
		}
		w.links[i] = linkAcc{}
	}
	w.links = w.links[:0]
}
