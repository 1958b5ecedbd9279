package dataplane

// The worker pipeline. One worker per NIC queue (AF_XDP) or per socket of
// the SO_REUSEPORT group, on its own locked OS thread:
//
//  1. Receive a batch from the Port: AF_XDP RX descriptors parsed with
//     frame.Parse, or a recvmmsg batch. Frames that do not parse are
//     counted by kind.
//  2. Classify each UDP payload by its first octet (RFC 7983): 128..191 is
//     media, with RTCP told from RTP by the second octet (192..223, RFC
//     5761); DTLS (20..63) and STUN (0..3) are copied to the slow path
//     (they reach the worker only in socket mode); anything else is junk.
//  3. Look up the sender by source address in the key table; the Reader
//     takes one snapshot per batch (Begin/End around the batch). A sender
//     whose receive state another worker holds is dropped (DropMisrouted)
//     and that worker is asked to hand it over (handover.go). From a peer
//     Media Distributor's media address, the packet's conference tag
//     (link.go: the last CSRC, or the word after an SRTCP packet) picks
//     the link association (no tag or an unknown one: counted drops).
//  4. HBH open in place with this worker's own Opener for the sender (for
//     a link, then take the tag CSRC out of the header),
//     created on the sender's first packet and replaced when its keys
//     change (Peer.Gen), or handed over by the worker that had it. An
//     Opener is held by one worker at a time: the flow hash (RSS queue or
//     SO_REUSEPORT) keeps an endpoint on one, and when the flow moves the
//     Opener moves with it, never copied.
//  5. Admit the packet under the sender's claim on its SSRC (a collision,
//     an SSRC over the sender's budget or an index a re-based SSRC cannot
//     place drops it) and update the sender's last-seen time.
//  6. For each member of the conference except the sender (and, for a
//     packet from a link, except the links: never link to link): take a TX
//     buffer from the port, seal the plaintext straight into it with the
//     member's Send keys under the index the key table gives for that
//     member (the sender's own, or, when the member was sent the SSRC
//     under an earlier owner, a re-based one: SEQ rewritten, with the
//     original kept in the OHB for the double profiles, and the new ROC;
//     for SRTCP the new index), and
//     commit it; the port writes the Ethernet/IP/UDP headers (AF_XDP) or
//     queues a sendmmsg message. For the double profiles (RFC 8723) only
//     the outer layer is opened and sealed; the inner one is copied as is,
//     and so is the EKTField (RFC 8870) that ends every double-profile
//     SRTP packet: taken off before the open, appended after each seal.
//     A copy for a link gets the conference's tag: one more CSRC before
//     the seal (none left at 15 CSRCs: counted drop), or a word after
//     the SRTCP packet; its packets and octets are counted per link.
//  7. Flush the TX batch, release the RX buffers, reap completions, and
//     publish the batch's counters (the per-link ones: one atomic add per
//     counter and link per batch). Once the flush's TX kick returned, one
//     clock reading gives the dwell of every forwarded packet that came
//     with an XDP receive time (RxPacket.RxTime), counted in the worker's
//     dwell histogram (package dwell). Between batches (and when idle)
//     serve the hand-over mailbox.
//
// Nothing in the loop allocates once the worker has seen its senders: the
// batch slices are allocated once in NewWorker, the nonce scratch lives in
// the worker, and counters are plain words published atomically per batch.

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/internal/dwell"
	"github.com/mdfast/mdfast/internal/ekt"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/slowpkt"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// SlowPacket is a datagram for the slow path (DTLS, STUN): a copy the
// receiver owns.
type SlowPacket = slowpkt.Packet

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// BatchSize is the number of datagrams received per batch (default
	// 64).
	BatchSize int
	// MaxSSRCs bounds the SSRCs tracked per sender (default 64).
	MaxSSRCs int
	// MaxSSRCsPerLink bounds the SSRCs tracked per link association, which
	// carries every sender behind a peer Media Distributor (default
	// keytable.DefaultMaxSSRCsPerLink; set it to the key table's
	// Config.MaxSSRCsPerLink).
	MaxSSRCsPerLink int
	// OpenerIdle is how long an Opener for a sender that sends nothing is
	// kept (default 10 minutes). It must exceed the key table's idle
	// expiry: an Opener dropped while its keys live would forget its replay
	// window.
	OpenerIdle time.Duration
	// Slow receives DTLS and STUN copies (socket mode); nil drops them.
	Slow chan<- SlowPacket
	// SlowPriority, with Triage, is the slow path's priority lane: the
	// datagrams Triage picks go there (see Dataplane.SetSlowTriage).
	SlowPriority chan<- SlowPacket
	Triage       func(b []byte, from, to netip.AddrPort) bool
	// Bulk, if set, takes the slow-path datagrams Triage does not pick, in
	// place of Slow (the Dataplane's fair queue); false means dropped.
	// BulkRoom, if set, says beforehand whether Bulk may take a datagram
	// from a source (so that a flood is not copied only to be dropped).
	Bulk     func(SlowPacket) bool
	BulkRoom func(from netip.Addr) bool
	// TxKickFrames, when positive, flushes the TX batch (the AF_XDP kick)
	// as soon as this many datagrams were queued since the last flush,
	// after the packet whose copies reached it, instead of only once per
	// received batch (and when the port's TX batch is full): the first
	// packets of a large batch leave before the rest are sealed. Their
	// dwell is observed at that kick. 0 (the default) flushes per batch.
	TxKickFrames int
	// Pin pins the worker's thread to CPU.
	Pin bool
	CPU int
	// Logger, default slog.Default().
	Logger *slog.Logger
}

// Worker runs the pipeline for one Port. Its methods other than Stats are
// for its own goroutine.
type Worker struct {
	id    int
	port  Port
	table Reader
	// kt is table when it is the key table's reader (nil otherwise):
	// handle looks a routed source up in its routes without a call.
	kt  *ktReader
	cfg WorkerConfig

	rx      []RxPacket
	sc      srtpfast.Scratch
	info    srtpfast.RTPInfo // what the Opener said of the packet handled last
	openers map[uint64]*openerEntry
	// recent is a direct-mapped cache in front of openers, by sender ID:
	// with several senders' packets interleaved in a batch, a hit costs a
	// few instructions where the map costs a call and a probe. An entry
	// is used only while its sender's generation and keys match; forget
	// clears it when the entry leaves openers.
	recent  [recentOpeners]recentOpener
	sweepAt int64

	txErrLogged bool

	// Hand-overs (handover.go): the hub of the Dataplane (nil for a lone
	// worker), the ID of this worker's Reader, its mailbox, when it last asked for each
	// misrouted sender, and scratch for serve; retry and quiet are
	// handoverRetry and handoverQuiet (tests change them).
	hub         *hub
	rid         int
	retry       time.Duration
	quiet       time.Duration
	box         mailbox
	asked       map[uint64]int64
	reqScratch  []handoverRequest
	giftScratch []gift
	// deferred are the requests w could not answer yet (deferSpare is
	// serve's second buffer for them); deferDue is the earliest of their
	// due times, 0 if none.
	deferred   []deferredRequest
	deferSpare []deferredRequest
	deferDue   int64

	// links accumulates the batch's per-link traffic (link.go).
	links []linkAcc

	// openerIdle is cfg.OpenerIdle, changed by SetOpenerIdle.
	openerIdle atomic.Int64

	counts    Counts
	published Counts
	pub       [NumCounters]atomic.Uint64

	// dwell is the histogram of forwarded packets' time in the worker.
	dwell *dwell.Recorder
	// unkicked counts the datagrams queued since the last flush
	// (WorkerConfig.TxKickFrames).
	unkicked int
}

type openerEntry struct {
	gen     uint64
	keys    *srtpfast.Keys
	double  bool // keys.Profile().IsDouble()
	o       *srtpfast.Opener
	peer    *Peer // a version of the sender with this gen (for hand-overs)
	used    int64 // batch time of the last packet
	opened  int64 // batch time of the last packet opened
	touched int64 // last time given to Peer.Seen
}

// NewWorker returns a worker reading port and the key table through r.
func NewWorker(id int, port Port, r Reader, cfg WorkerConfig) *Worker {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 64
	}
	if cfg.MaxSSRCs <= 0 {
		cfg.MaxSSRCs = 64
	}
	if cfg.MaxSSRCsPerLink <= 0 {
		cfg.MaxSSRCsPerLink = keytable.DefaultMaxSSRCsPerLink
	}
	if cfg.OpenerIdle <= 0 {
		cfg.OpenerIdle = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Worker{
		id: id, port: port, table: r, cfg: cfg,
		rx:      make([]RxPacket, cfg.BatchSize),
		openers: make(map[uint64]*openerEntry),
		links:   make([]linkAcc, 0, maxLinkAccs),
		asked:   make(map[uint64]int64),
		retry:   handoverRetry, quiet: handoverQuiet,
	}
	w.kt, _ = r.(*ktReader)
	w.openerIdle.Store(int64(cfg.OpenerIdle))
	var err error
	if w.dwell, err = dwell.NewRecorder(cfg.BatchSize); err != nil {
		cfg.Logger.Warn("dataplane: no dwell measurement", "worker", id, "err", err)
	}
	port.Bind(&w.counts)
	return w
}

// SetOpenerIdle changes how long the worker keeps an idle sender's
// Opener (WorkerConfig.OpenerIdle) from its next sweep on; zero or less
// is ignored. It is safe to call from any goroutine.
func (w *Worker) SetOpenerIdle(d time.Duration) {
	if d > 0 {
		w.openerIdle.Store(int64(d))
	}
}

// Run locks the goroutine to its thread (pinned to cfg.CPU when cfg.Pin) and
// runs the pipeline until stop is set, or until the port fails.
func (w *Worker) Run(stop *atomic.Bool) error {
	runtime.LockOSThread()
	pinned := false
	if w.cfg.Pin {
		var set unix.CPUSet
		set.Set(w.cfg.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			w.cfg.Logger.Warn("dataplane: cannot pin worker", "worker", w.id, "cpu", w.cfg.CPU, "err", err)
		} else {
			pinned = true
		}
	}
	// A pinned thread stays locked: the runtime then ends it with the
	// goroutine instead of reusing it with the changed affinity.
	if !pinned {
		defer runtime.UnlockOSThread()
	}
	if c, ok := w.table.(interface{ Close() }); ok {
		defer c.Close() // e.g. a keytable.Reader: writers stop waiting for it
	}
	for !stop.Load() {
		if err := w.poll(); err != nil {
			if stop.Load() {
				w.park(true)
				return nil
			}
			w.park(false)
			return err
		}
	}
	w.park(true)
	return nil
}

// poll runs the pipeline once: one received batch (or an idle wait).
func (w *Worker) poll() error {
	n, err := w.port.Receive(w.rx)
	if err != nil {
		w.publish()
		return err
	}
	now := time.Now().UnixNano()
	w.serve(now) // hand-overs, between batches (one atomic load if none)
	if n == 0 {
		w.flush() // reap completions while idle
		w.publish()
		return nil
	}
	w.table.Begin()
	for i := range w.rx[:n] {
		w.handle(&w.rx[i], now)
	}
	w.table.End()
	w.flushLinks()
	w.flush()
	w.dwell.Observe()
	w.unkicked = 0
	w.port.Release(w.rx[:n])
	if now >= w.sweepAt {
		w.sweep(now)
	}
	w.publish()
	return nil
}

// flush transmits the batch. A transmit error is counted and logged once;
// a port that is gone fails its next Receive, which ends the worker.
func (w *Worker) flush() {
	if err := w.port.Flush(); err != nil {
		w.counts[DropTxError]++
		if !w.txErrLogged {
			w.txErrLogged = true
			w.cfg.Logger.Warn("dataplane: transmit failed", "worker", w.id, "err", err)
		}
	}
}

// handle runs steps 2 to 6 for one datagram.
func (w *Worker) handle(p *RxPacket, now int64) {
	c := &w.counts
	if p.Drop != 0 {
		c[p.Drop]++
		return
	}
	b := p.Payload
	c[RxPackets]++
	c[RxBytes] += uint64(len(b))
	if len(b) == 0 {
		c[DropEmpty]++
		return
	}
	switch first := b[0]; {
	case first >= 128 && first <= 191:
	case first <= 3 || (first >= 20 && first <= 63):
		w.slow(p)
		return
	default:
		c[DropJunk]++
		return
	}
	rtcp := len(b) >= 2 && b[1]-192 < 32 // 192..223
	var (
		sender  *Peer
		members []*Peer
		ok      bool
	)
	if e := w.kt.cachedRoute(p.Src); e != nil {
		sender, members, ok = e.peer, e.members, true
	} else {
		sender, members, ok = w.table.Route(p.Src)
	}
	if !ok && sender == LinkAddress {
		var (
			tag    uint32
			reason Reason
		)
		if rtcp {
			b, tag, reason = rtcpLinkTag(b)
		} else {
			tag, reason = rtpLinkTag(b)
		}
		if reason != 0 {
			c[reason]++
			return
		}
		sender, members, ok = w.table.RouteLink(p.Src, tag)
		if sender == nil {
			c[DropLinkUnknownTag]++
			return
		}
	}
	if !ok {
		if sender == nil {
			c[DropUnknownSource]++
			return
		}
		c[DropMisrouted]++
		w.misrouted(sender, now)
		return
	}
	// A sender seen lately (the usual case) is found in recent here;
	// opener does the rest. An entry's keys are never nil.
	ro := &w.recent[openerSlot(sender.ID)]
	e := ro.e
	if ro.id != sender.ID || e == nil || e.gen != sender.Gen || e.keys != sender.Recv {
		e = w.opener(sender)
	}
	if e == nil {
		c[DropNoKeys]++
		return
	}
	e.used = now

	var (
		// rxLink is the link the packet came from, if it did.
		rxLink *keytable.LinkStats
		plain  []byte
		ssrc   uint32
		idx    uint64 // SRTP index (ROC << 16 | SEQ) or SRTCP index
		tail   []byte // the EKTField, carried to every receiver untouched
		hdr    int    // RTP header length of plain (the Opener measured it)
	)
	double := e.double
	if sender.Link {
		rxLink = w.linkStats(sender)
	}
	if !rtcp && double {
		// RFC 8723 section 5.1 with RFC 8870 section 4.1: a double-profile
		// SRTP packet ends in an EKTField after the outer tag. The MD holds
		// no EKTKey: it carries the field as it came.
		n, _, err := ekt.FieldLen(b)
		if err != nil {
			w.dropRx(rxLink, DropEKTField)
			return
		}
		b, tail = b[:len(b)-n], b[len(b)-n:]
	}
	if rtcp {
		info, err := e.o.OpenRTCP(b)
		if err != nil {
			w.dropRx(rxLink, openReason(err))
			return
		}
		plain, ssrc, idx = b[:info.Len], info.SSRC, uint64(info.Index)
	} else {
		info := &w.info
		if err := e.o.OpenRTPTo(info, b); err != nil {
			w.dropRx(rxLink, openReason(err))
			return
		}
		plain, ssrc, idx, hdr = b[:info.Len], info.SSRC, info.Index(), info.HeaderLen
		if rxLink != nil {
			plain = stripLinkTag(plain)
			hdr -= linkTagLen // the CSRC stripLinkTag removed
		}
	}
	e.opened = now
	rebased, admitted := w.table.Admit(sender, ssrc, rtcp, idx, now)
	if !admitted {
		w.dropRx(rxLink, DropSSRCCollision)
		return
	}
	if rxLink != nil {
		rxLink.RxPackets++
		rxLink.RxBytes += uint64(len(p.Payload))
		c[LinkRx]++
	}
	if e.touched != now && sender.Seen != nil {
		e.touched = now
		sender.Seen.Touch(now)
	}

	sent, eligible := 0, 0
	// What every copy of the packet shares, found once: a plain copy (of
	// an SRTP packet, to a member that is not a link, under the packet's
	// own index: every copy unless the SSRC was re-based) is sealed from
	// the opened packet with the header length found here; the others
	// take sendCopy. The Opener measured the header (hdr), less the
	// link's tag if stripped.
	plainCopies := !rtcp && !rebased
	room := len(plain) + len(tail) // and the receiver's RTPOverhead
	for _, r := range members {
		if r == nil || r.ID == sender.ID || (r.Link && sender.Link) {
			continue // never back, never from a link to a link
		}
		eligible++
		if r.Send == nil {
			continue
		}
		if !plainCopies || r.Link {
			if w.sendCopy(r, p, plain, tail, rtcp, double, idx) {
				sent++
			}
			continue
		}
		buf, reason := w.port.TxBuffer(r.Addr, p)
		if reason != 0 {
			c[reason]++
			continue
		}
		// Seal from the opened plaintext straight into the TX frame: one
		// pass over the payload per receiver.
		buf = buf[:cap(buf)]
		if len(buf) < room+r.Send.RTPOverhead() {
			c[DropTooBig]++
			continue
		}
		n, err := r.Send.SealRTPHeader(&w.sc, buf, plain, hdr, uint32(idx>>16))
		if err != nil {
			c[DropSeal]++
			continue
		}
		if len(tail) != 0 {
			n += copy(buf[n:], tail) // within buf: checked above
		}
		w.port.Commit(n)
		sent++
	}
	if sent > 0 {
		c[Forwarded]++
		w.dwell.Mark(p.RxTime)
		if k := w.cfg.TxKickFrames; k > 0 {
			if w.unkicked += sent; w.unkicked >= k {
				w.flush()
				w.dwell.Observe()
				w.unkicked = 0
			}
		}
	} else if eligible == 0 {
		c[DropNoReceivers]++
	}
}

// sendCopy seals and sends the copy of an opened packet for receiver r
// when it is not a plain one (see handle): an SRTCP packet, a copy for a
// link (tagged), or one whose index r's claim re-bases. It reports whether
// the copy was sent; a drop is counted.
func (w *Worker) sendCopy(r *Peer, p *RxPacket, plain, tail []byte, rtcp, double bool, idx uint64) bool {
	c := &w.counts
	var txLink *keytable.LinkStats
	if r.Link {
		txLink = w.linkStats(r)
		if !rtcp && plain[0]&0x0f == 15 {
			w.dropTx(txLink, DropLinkCSRCFull)
			return false
		}
	}
	buf, reason := w.port.TxBuffer(r.Addr, p)
	if reason != 0 {
		w.dropTx(txLink, reason)
		return false
	}
	oi, ok := w.table.OutIndex(r)
	if !ok {
		w.dropTx(txLink, DropSSRCIndex)
		return false
	}
	overhead := r.Send.RTPOverhead() + len(tail)
	if rtcp {
		overhead = r.Send.RTCPOverhead()
	} else if oi != idx && double {
		overhead += srtpfast.MaxOHBLen - 1 // the OHB may grow
	}
	if r.Link {
		overhead += linkTagLen
	}
	if cap(buf) < len(plain)+overhead {
		w.dropTx(txLink, DropTooBig)
		return false
	}
	// Seal from the opened plaintext straight into the TX frame: one pass
	// over the payload per receiver. Only a re-based packet, whose header
	// (and OHB) differ for this receiver, is copied first and sealed in
	// place.
	var (
		out []byte
		err error
	)
	switch {
	case rtcp:
		out, err = r.Send.SealRTCP(&w.sc, buf[:0], plain, uint32(oi))
		if err == nil && r.Link {
			out = binary.BigEndian.AppendUint32(out, r.Tag) // within cap
		}
	case r.Link:
		// The tag goes in as a CSRC, so the header moves: build the packet
		// in the frame and seal it in place. Its ROC usually differs from
		// the sender's (the peer's Opener counts it from the link's first
		// packet, see keytable's Claim.Out); the SEQ only when re-based.
		out = insertLinkTag(buf, plain, r.Tag)
		if uint16(oi) != uint16(idx) {
			out, err = rebase(out, double, uint16(oi))
			c[Rebased]++
		}
		if err == nil {
			out, err = r.Send.SealRTP(&w.sc, out[:0], out, uint32(oi>>16))
		}
	case oi == idx:
		out, err = r.Send.SealRTP(&w.sc, buf[:0], plain, uint32(oi>>16))
	default:
		out = buf[:len(plain)]
		copy(out, plain)
		out, err = rebase(out, double, uint16(oi))
		c[Rebased]++
		if err == nil {
			out, err = r.Send.SealRTP(&w.sc, out[:0], out, uint32(oi>>16))
		}
	}
	if err != nil {
		w.dropTx(txLink, DropSeal)
		return false
	}
	if len(tail) != 0 {
		out = append(out, tail...) // within cap: checked above
	}
	w.port.Commit(len(out))
	if txLink != nil {
		txLink.TxPackets++
		txLink.TxBytes += uint64(len(out))
		c[LinkTx]++
	}
	return true
}

// dropRx counts a dropped packet from a sender, and against its link if
// it came from one.
func (w *Worker) dropRx(l *keytable.LinkStats, reason Reason) {
	w.counts[reason]++
	if l != nil {
		l.RxDrops++
	}
}

// dropTx counts a dropped copy, and against the link it was for if any.
func (w *Worker) dropTx(l *keytable.LinkStats, reason Reason) {
	w.counts[reason]++
	if l != nil {
		l.TxDrops++
	}
}

// rebase gives the plaintext RTP packet pkt (with room for the OHB to
// grow) the sequence number seq: in the header, and, for the double
// profiles, with the original recorded in the OHB (RFC 8723 section 5.2).
func rebase(pkt []byte, double bool, seq uint16) ([]byte, error) {
	if !double {
		binary.BigEndian.PutUint16(pkt[2:], seq)
		return pkt, nil
	}
	n, err := srtpfast.RewriteDouble(pkt, srtpfast.Rewrite{SetSeq: true, Seq: seq})
	return pkt[:n], err
}

// opener returns this worker's Opener for the sender's current keys,
// creating it on first use or when the keys changed; nil when the sender
// has no receive keys.
func (w *Worker) opener(p *Peer) *openerEntry {
	if p.Recv == nil {
		return nil
	}
	r := &w.recent[openerSlot(p.ID)]
	if e := r.e; e != nil && r.id == p.ID && e.gen == p.Gen && e.keys == p.Recv {
		return e // a sender seen lately: the usual case
	}
	e := w.openers[p.ID]
	if e == nil || e.gen != p.Gen || e.keys != p.Recv {
		n := w.cfg.MaxSSRCs
		if p.Link {
			n = w.cfg.MaxSSRCsPerLink // every sender behind the peer MD
		}
		e = &openerEntry{gen: p.Gen, keys: p.Recv, double: p.Recv.Profile().IsDouble(), o: srtpfast.NewOpener(p.Recv, n), peer: p}
		w.openers[p.ID] = e
	}
	*r = recentOpener{id: p.ID, e: e}
	return e
}

// recentOpeners is the size of Worker.recent (a power of two).
const recentOpeners = 16

type recentOpener struct {
	id uint64
	e  *openerEntry
}

// openerSlot returns the slot of sender id in Worker.recent: Fibonacci
// hashing (IDs are random, but need not be).
func openerSlot(id uint64) uint64 { return id * 0x9e3779b97f4a7c15 >> (64 - 4) } // < recentOpeners

// forget drops sender id's entry from recent: its Opener left openers or
// was replaced there.
func (w *Worker) forget(id uint64) {
	if r := &w.recent[openerSlot(id)]; r.id == id {
		*r = recentOpener{}
	}
}

// sweep forgets Openers of senders idle for longer than OpenerIdle, and
// releases their ownership: with no state left here, whichever worker the
// sender's flow reaches next builds the Opener (as this one would), instead
// of asking a worker that has nothing to hand over.
//
// A link's Opener is kept until the link is removed, however long it is
// silent: links are never idle-expired, and a fresh Opener would start
// every SSRC at ROC 0 while the peer MD goes on with the ROC it counts
// for the link (keytable's Claim.Out).
func (w *Worker) sweep(now int64) {
	idle := w.openerIdle.Load()
	for id, e := range w.openers {
		if p := e.peer; p.Link && p.Traffic != nil && !p.Traffic.Removed() {
			continue
		}
		if now-e.used > idle {
			delete(w.openers, id)
			w.forget(id)
			w.table.Release(e.peer)
		}
	}
	for id, at := range w.asked {
		if now-at > int64(time.Second) {
			delete(w.asked, id)
		}
	}
	w.sweepAt = now + idle/4
}

// slow hands a copy of a DTLS or STUN datagram to the slow path, dropping
// it when the queue is full.
func (w *Worker) slow(p *RxPacket) {
	prio := w.cfg.SlowPriority != nil && w.cfg.Triage != nil && w.cfg.Triage(p.Payload, p.Src, p.Dst)
	if !prio && w.cfg.Bulk != nil {
		if w.cfg.BulkRoom != nil && !w.cfg.BulkRoom(p.Src.Addr()) {
			w.counts[DropSlowFull]++
			return
		}
		if w.cfg.Bulk(SlowPacket{Data: append([]byte(nil), p.Payload...), From: p.Src, To: p.Dst}) {
			w.counts[SlowPath]++
		} else {
			w.counts[DropSlowFull]++
		}
		return
	}
	ch := w.cfg.Slow
	if prio {
		ch = w.cfg.SlowPriority
	}
	if ch == nil || len(ch) == cap(ch) {
		w.counts[DropSlowFull]++
		return
	}
	sp := SlowPacket{Data: append([]byte(nil), p.Payload...), From: p.Src, To: p.Dst}
	select {
	case ch <- sp:
		w.counts[SlowPath]++
	default:
		w.counts[DropSlowFull]++
	}
}

// publish makes the batch's counters visible to Stats.
func (w *Worker) publish() {
	for i := range w.counts {
		if v := w.counts[i]; v != w.published[i] {
			w.pub[i].Store(v)
			w.published[i] = v
		}
	}
	w.dwell.Publish()
}

// Dwell copies the worker's dwell histogram, as of its last batch, into h.
// It is safe to call from any goroutine.
func (w *Worker) Dwell(h *dwell.Hist) { w.dwell.Snapshot(h) }

// Stats returns a snapshot of the worker's counters, as of its last batch.
// It is safe to call from any goroutine.
func (w *Worker) Stats() Stats {
	var s Stats
	for i := range s {
		s[i] = w.pub[i].Load()
	}
	return s
}
