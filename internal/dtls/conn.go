package dtls

import (
	"crypto"
	"crypto/ecdh"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// EventKind says what happened.
type EventKind uint8

// Events a Conn reports.
const (
	// EventKeysReady (server with HoldFinalFlight): the client is
	// authenticated and its Finished verified; keys can be exported. The
	// Conn waits for ReleaseFinalFlight.
	EventKeysReady EventKind = iota + 1
	// EventHandshakeComplete: the handshake is done (server: its final
	// flight has gone out; client: the server's Finished verified).
	EventHandshakeComplete
	// EventEKTKey (client): an EKTKey arrived (Event.EKTKey); it has been
	// acknowledged.
	EventEKTKey
	// EventEKTKeyAcked (server): the client acknowledged the EKTKey with
	// SPI Event.SPI.
	EventEKTKeyAcked
	// EventClosed: the Conn ended; Event.Err says why (ErrPeerClosed, an
	// *AlertError, ErrTimeout). Not reported after Close.
	EventClosed
)

func (k EventKind) String() string {
	switch k {
	case EventKeysReady:
		return "keys-ready"
	case EventHandshakeComplete:
		return "handshake-complete"
	case EventEKTKey:
		return "ekt-key"
	case EventEKTKeyAcked:
		return "ekt-key-acked"
	case EventClosed:
		return "closed"
	}
	return "unknown"
}

// Event is something the owner of a Conn must know.
type Event struct {
	Kind   EventKind
	EKTKey *EKTKey // EventEKTKey: owned by the receiver, which should Zero it when done
	SPI    uint16  // EventEKTKeyAcked
	Err    error   // EventClosed
}

type connState uint8

const (
	stateHandshake connState = iota
	stateHeld                // server: final flight held (HoldFinalFlight)
	stateEstablished
	stateClosed
)

// handshake steps.
type step uint8

const (
	cWaitHello step = iota + 1 // HelloVerifyRequest or ServerHello
	cWaitCertificate
	cWaitServerKeyExchange
	cWaitCertificateRequestOrDone
	cWaitServerHelloDone
	cWaitFinished
	sWaitClientHello
	sWaitCertificate
	sWaitClientKeyExchange
	sWaitCertificateVerify
	sWaitFinished
)

// handshake is the state that lives only while the handshake runs.
type handshake struct {
	step       step
	transcript []byte
	ecdh       *ecdh.PrivateKey
	peerKey    crypto.PublicKey
	chain      [][]byte // peer chain, until VerifyPeer accepted it

	// client
	hello   clientHelloParams
	hvrs    int
	certReq *certificateRequest
	ske     *serverKeyExchange
	// server
	recSeqCH  uint64 // record sequence number of the ClientHello being answered
	group     Group
	schemeOut SignatureScheme
	final     []outMessage
}

// maxEarlyRecords and maxEarlyBytes bound the epoch-1 records kept until
// the read keys exist (a Finished that overtook the ClientKeyExchange).
const (
	maxEarlyRecords = 8
	maxEarlyBytes   = 16 << 10
	maxHVRs         = 3
	maxEKTQueue     = 2 // the EKTKey in flight and the newest behind it
)

// Conn is one DTLS association, client or server. See the package
// documentation for how to drive it. Not safe for concurrent use.
type Conn struct {
	cfg     *Config
	server  bool
	state   connState
	err     error
	binding []byte
	signer  crypto.Signer

	// Record layer.
	writeSeq    [2]uint64
	writeEpoch  uint16
	writeCipher *gcmState
	readCipher  *gcmState
	replay      replayWindow
	early       [][]byte
	earlyBytes  int

	// Handshake message layer and retransmission (RFC 6347 section 4.2.4).
	reasm      reassembler
	sendSeq    uint16
	flight     []outMessage
	flightSent time.Time
	rto        time.Duration
	retrans    int
	deadline   time.Time

	hs *handshake

	// Negotiated.
	suite        suite
	master       []byte
	clientRandom [randomLen]byte
	serverRandom [randomLen]byte
	profile      uint16
	mki          []byte
	ekt          EKTCipher
	peerESID     []byte
	peerChain    [][]byte

	// Post-handshake (RFC 8870 section 5.2.2).
	postSeq    uint16 // first post-handshake message_seq of the peer
	ektQueue   []*EKTKey
	ektMsg     outMessage
	ektRecords []uint64 // epoch-1 records that carried ektQueue[0]
	ackPending []recordNumber

	out           [][]byte
	events        []Event
	hvrSent       bool   // a HelloVerifyRequest answered this datagram already
	authenticated uint64 // epoch-1 records that authenticated
}

// Authenticated returns the number of records received that authenticated
// (epoch 1): its owner can tell a live peer from forged traffic.
func (c *Conn) Authenticated() uint64 { return c.authenticated }

// NewClient returns a client Conn; Start sends its first flight.
func NewClient(cfg *Config) (*Conn, error) {
	return newConn(cfg, false, nil)
}

// NewServer returns a server Conn for one client. binding names the
// client's transport for the HelloVerifyRequest cookie: its address, or
// the association it is tunnelled on.
func NewServer(cfg *Config, binding []byte) (*Conn, error) {
	return newConn(cfg, true, binding)
}

func newConn(cfg *Config, server bool, binding []byte) (*Conn, error) {
	if cfg.settledFor != roleOf(server) {
		var err error
		if cfg, err = cfg.settled(server); err != nil {
			return nil, err
		}
	}
	c := &Conn{
		cfg:     cfg,
		server:  server,
		binding: slices.Clone(binding),
		signer:  cfg.Certificate.PrivateKey.(crypto.Signer),
		rto:     cfg.RetransmitTimeout,
		hs:      &handshake{step: cWaitHello},
		reasm:   reassembler{maxMsg: cfg.MaxHandshakeMessage, maxTotal: 2 * cfg.MaxHandshakeMessage},
	}
	if server {
		c.hs.step = sWaitClientHello
	}
	return c, nil
}

// Start sends the client's first flight (a no-op on a server).
func (c *Conn) Start(now time.Time) error {
	if c.server || c.state != stateHandshake || c.hs.step != cWaitHello || c.sendSeq != 0 {
		return c.err
	}
	if err := c.clientStart(now); err != nil {
		c.fail(err)
	}
	return c.err
}

// HandleDatagram processes one datagram from the peer. It returns an error
// only when the Conn has ended (now or before); what the datagram caused
// is in Datagrams and Events.
func (c *Conn) HandleDatagram(now time.Time, b []byte) error {
	if c.state == stateClosed {
		return c.err
	}
	if !c.server && c.sendSeq == 0 {
		c.drop(DropUnexpected) // a client not started yet
		return nil
	}
	c.hvrSent = false
	for len(b) > 0 && c.state != stateClosed {
		rec, rest, err := dtlsmsg.NextRecord(b)
		if err != nil {
			c.drop(DropMalformed)
			break
		}
		b = rest
		c.handleRecord(now, rec)
	}
	// Epoch-1 records that arrived before their keys.
	for c.readCipher != nil && len(c.early) > 0 && c.state != stateClosed {
		raw := c.early[0]
		c.early = c.early[1:]
		c.earlyBytes -= len(raw)
		if rec, _, err := dtlsmsg.NextRecord(raw); err == nil {
			c.handleRecord(now, rec)
		}
	}
	c.flushACK()
	return c.err
}

// HandleTimeout runs the retransmission timer; call it at or after
// Deadline.
func (c *Conn) HandleTimeout(now time.Time) error {
	if c.state == stateClosed {
		return c.err
	}
	if c.deadline.IsZero() || now.Before(c.deadline) {
		return nil
	}
	if c.retrans >= c.cfg.MaxRetransmissions {
		c.fail(ErrTimeout)
		return c.err
	}
	c.retrans++
	c.rto = min(2*c.rto, c.cfg.MaxRetransmitTimeout)
	c.deadline = now.Add(c.rto)
	if c.state == stateEstablished && len(c.ektQueue) > 0 {
		c.transmitEKT(now)
	} else {
		c.transmit(now)
	}
	return nil
}

// Deadline is when HandleTimeout must run next; zero when no timer runs.
func (c *Conn) Deadline() time.Time { return c.deadline }

// Datagrams returns the datagrams to send, in order, and forgets them. The
// caller owns them.
func (c *Conn) Datagrams() [][]byte {
	out := c.out
	c.out = nil
	return out
}

// Events returns what happened since the last call, in order, and forgets
// it.
func (c *Conn) Events() []Event {
	ev := c.events
	c.events = nil
	return ev
}

// AwaitingHello reports whether a server Conn holds nothing of its client
// yet: no ClientHello accepted and none being reassembled (a
// HelloVerifyRequest leaves it so). Its owner may drop such a Conn and make
// a new one for the client's next datagram: the cookie exchange is
// stateless.
func (c *Conn) AwaitingHello() bool {
	if !c.server || c.state != stateHandshake || c.hs.step != sWaitClientHello {
		return false
	}
	for _, m := range c.reasm.slots {
		if m != nil {
			return false
		}
	}
	return true
}

// Err is why the Conn ended, nil while it runs.
func (c *Conn) Err() error { return c.err }

// Established reports whether the handshake is complete and the Conn open.
func (c *Conn) Established() bool { return c.state == stateEstablished }

// Close ends the Conn: close_notify if the handshake got far enough, then
// every secret is zeroed. Closing twice is harmless.
func (c *Conn) Close(now time.Time) {
	if c.state == stateClosed {
		return
	}
	if c.state == stateEstablished || c.state == stateHeld {
		c.sendAlert(alertLevelWarning, AlertCloseNotify)
	}
	c.state, c.err = stateClosed, ErrClosed
	c.wipe()
}

// Abort ends the Conn with the fatal alert desc (its owner's decision:
// the handshake took too long, the peer was revoked). Secrets are zeroed;
// no event is reported.
func (c *Conn) Abort(desc uint8) {
	if c.state == stateClosed {
		return
	}
	c.sendAlert(alertLevelFatal, desc)
	c.state, c.err = stateClosed, ErrClosed
	c.wipe()
}

// ConnectionState describes an established (or held) Conn.
type ConnectionState struct {
	CipherSuite uint16
	SRTPProfile uint16
	// SRTPMKI is the MKI both sides use (the client's), nil if none.
	SRTPMKI []byte
	// EKTCipher is the negotiated EKT cipher, 0 if none.
	EKTCipher EKTCipher
	// PeerExternalSessionID is the peer's external_session_id, nil if it
	// sent none.
	PeerExternalSessionID []byte
	// PeerCertificates is the peer's chain (DER, leaf first).
	PeerCertificates [][]byte
}

// State returns the negotiated parameters; ok is false before the keys are
// ready or after the Conn ended.
func (c *Conn) State() (st ConnectionState, ok bool) {
	if c.state != stateEstablished && c.state != stateHeld {
		return st, false
	}
	return ConnectionState{
		CipherSuite:           c.suite.id,
		SRTPProfile:           c.profile,
		SRTPMKI:               slices.Clone(c.mki),
		EKTCipher:             c.ekt,
		PeerExternalSessionID: slices.Clone(c.peerESID),
		PeerCertificates:      c.peerChain,
	}, true
}

// reservedLabels are the PRF labels RFC 5705 section 4 forbids exporting.
var reservedLabels = []string{labelExtendedMaster, "master secret", labelKeyExpansion, labelClientFinished, labelServerFinished}

// MaxExportLen bounds one ExportKeyingMaterial call.
const MaxExportLen = 1 << 16

// ExportKeyingMaterial is the RFC 5705 exporter; context nil means no
// context (what DTLS-SRTP uses, RFC 5764 section 4.2). Available from
// EventKeysReady (server) or EventHandshakeComplete until the Conn ends.
func (c *Conn) ExportKeyingMaterial(label string, context []byte, n int) ([]byte, error) {
	switch {
	case c.state != stateEstablished && c.state != stateHeld:
		return nil, ErrNotEstablished
	case slices.Contains(reservedLabels, label):
		return nil, fmt.Errorf("dtls: export with reserved label %q", label)
	case n <= 0 || n > MaxExportLen:
		return nil, fmt.Errorf("dtls: export of %d octets", n)
	}
	return export(c.suite.hash, c.master, label, c.clientRandom[:], c.serverRandom[:], context, context != nil, n), nil
}

// handleRecord processes one record.
func (c *Conn) handleRecord(now time.Time, rec dtlsmsg.Record) {
	switch {
	case rec.Version != versionDTLS12 && !(rec.Version == versionDTLS10 && rec.Epoch == 0):
		c.drop(DropMalformed)
	case rec.Epoch == 0:
		c.handlePlaintext(now, rec)
	case rec.Epoch == 1 && c.readCipher != nil:
		if rec.Sequence > maxSeq || !c.replay.check(rec.Sequence) {
			c.drop(DropReplay)
			return
		}
		pt, err := c.readCipher.open(rec.ContentType, rec.Version, 1, rec.Sequence, rec.Fragment)
		if err != nil {
			c.drop(DropAuth)
			return
		}
		c.replay.mark(rec.Sequence)
		c.authenticated++
		if len(pt) > maxPlaintext {
			c.fail(alertf(AlertRecordOverflow, "record of %d octets of plaintext", len(pt)))
			return
		}
		c.handleProtected(now, rec.ContentType, rec.Sequence, pt)
		clear(pt) // it may hold an EKTKey
	case rec.Epoch == 1 && c.state == stateHandshake:
		n := recordHeaderLen + len(rec.Fragment)
		if len(c.early) >= maxEarlyRecords || c.earlyBytes+n > maxEarlyBytes {
			c.drop(DropEpoch)
			return
		}
		raw := appendRecordHeader(make([]byte, 0, n), rec.ContentType, rec.Version, rec.Epoch, rec.Sequence, len(rec.Fragment))
		c.early = append(c.early, append(raw, rec.Fragment...))
		c.earlyBytes += n
	default:
		c.drop(DropEpoch)
	}
}

// handlePlaintext processes an epoch-0 record.
func (c *Conn) handlePlaintext(now time.Time, rec dtlsmsg.Record) {
	switch rec.ContentType {
	case contentHandshake:
		if c.state != stateHandshake {
			// After the handshake nothing unauthenticated changes state or
			// draws an answer: a client repeating its last flight repeats
			// its Finished too, in epoch 1, and that asks for ours again.
			c.drop(DropUnauthenticated)
			return
		}
		c.handleHandshakeRecord(now, 0, rec.Sequence, rec.Fragment)
	case contentAlert:
		if c.state != stateHandshake {
			c.drop(DropUnauthenticated)
			return
		}
		c.handleAlert(rec.Fragment, false)
	case contentChangeCipherSpec:
		// Keys are installed by the handshake messages; a ChangeCipherSpec
		// only announces them (RFC 6347 section 4.1: it may be lost or
		// reordered). Nothing to do, and nothing to count.
	default:
		c.drop(DropUnexpected)
	}
}

// handleProtected processes the plaintext of an authenticated epoch-1
// record.
func (c *Conn) handleProtected(now time.Time, typ uint8, seq uint64, pt []byte) {
	switch typ {
	case contentHandshake:
		c.handleHandshakeRecord(now, 1, seq, pt)
	case contentAlert:
		c.handleAlert(pt, true)
	case contentACK:
		c.handleACK(now, pt)
	default:
		// Application data means nothing to DTLS-SRTP; a ChangeCipherSpec
		// in epoch 1 is out of place but harmless.
		c.drop(DropUnexpected)
	}
}

// handleHandshakeRecord feeds the handshake fragments of one record to the
// reassembler and processes every message that becomes complete in order.
func (c *Conn) handleHandshakeRecord(now time.Time, epoch uint16, recSeq uint64, frag []byte) {
	retransmitted, ack := false, false
	for len(frag) > 0 {
		h, part, rest, err := dtlsmsg.NextHandshake(frag)
		if err != nil {
			if epoch > 0 {
				c.fail(alertf(AlertDecodeError, "handshake fragment in an authenticated record: %v", err))
			} else {
				c.drop(DropMalformed)
			}
			return
		}
		frag = rest
		if c.server && c.hs != nil && c.hs.step == sWaitClientHello {
			if epoch != 0 || h.Type != typeClientHello {
				c.drop(DropUnexpected)
				continue
			}
			// The cookie exchange leaves no state: whichever ClientHello
			// comes (a repeat of the first, or the one with the cookie)
			// is reassembled from scratch when nothing else is pending.
			if h.MessageSeq != c.reasm.next {
				c.reasm.reset(h.MessageSeq)
			}
			c.hs.recSeqCH = recSeq
		}
		if c.state == stateEstablished && epoch == 1 && !c.server && h.MessageSeq-c.postSeq < 0x8000 {
			ack = true
		}
		out, aerr := c.reasm.add(epoch, h, part)
		if aerr != nil {
			if c.server && c.hs != nil && c.hs.step == sWaitClientHello {
				// Before the cookie exchange nothing is known of the
				// client: a bad fragment is dropped, not a reason to
				// answer (RFC 6347 section 4.1.2.7), and the next
				// ClientHello starts afresh.
				c.reasm.reset(h.MessageSeq + 1)
				c.drop(DropMalformed)
				continue
			}
			c.fail(aerr)
			return
		}
		switch out {
		case fragOld:
			retransmitted = true
		case fragBeyond, fragNoRoom:
			c.drop(DropWindow)
		case fragEpoch:
			c.drop(DropEpoch)
		}
	}
	if ack && len(c.ackPending) < maxACKRecords {
		c.ackPending = append(c.ackPending, recordNumber{epoch: 1, seq: recSeq})
	}
	for m := c.reasm.pop(); m != nil && c.state != stateClosed; m = c.reasm.pop() {
		c.handleMessage(now, m)
	}
	if retransmitted {
		c.peerRetransmitted(now)
	}
}

// handleMessage processes one complete handshake message, in order.
func (c *Conn) handleMessage(now time.Time, m *inMessage) {
	defer clear(m.body)
	if c.state == stateEstablished || c.state == stateHeld {
		if m.epoch != 1 {
			c.drop(DropUnauthenticated)
			return
		}
		if c.server {
			c.serverPostHandshake(m)
		} else {
			c.clientPostHandshake(m)
		}
		return
	}
	want := uint16(0)
	if m.typ == typeFinished {
		want = 1
	}
	if m.epoch != want {
		c.fail(alertf(AlertUnexpectedMessage, "handshake message type %d in epoch %d", m.typ, m.epoch))
		return
	}
	var err error
	if c.server {
		err = c.serverMessage(now, m)
	} else {
		err = c.clientMessage(now, m)
	}
	if err != nil {
		c.fail(err)
	}
}

// handleAlert processes an alert record.
func (c *Conn) handleAlert(b []byte, protected bool) {
	if len(b) != 2 {
		if protected {
			c.fail(alertf(AlertDecodeError, "alert of %d octets", len(b)))
		} else {
			c.drop(DropMalformed)
		}
		return
	}
	switch level, desc := b[0], b[1]; {
	case desc == AlertCloseNotify:
		if c.state == stateEstablished {
			c.sendAlert(alertLevelWarning, AlertCloseNotify)
		}
		c.finish(ErrPeerClosed)
	case level == alertLevelFatal:
		c.finish(&AlertError{Description: desc, Remote: true})
	}
	// Other warnings (no_renegotiation, user_canceled) leave the
	// connection as it is.
}

// peerRetransmitted answers a repeat of the peer's previous flight with our
// last flight (RFC 6347 section 4.2.4), at most once per half timeout so
// that one repeated flight of several datagrams gets one answer.
func (c *Conn) peerRetransmitted(now time.Time) {
	if len(c.flight) == 0 || c.state == stateHeld || c.state == stateClosed {
		return
	}
	if now.Sub(c.flightSent) < c.cfg.RetransmitTimeout/2 {
		return
	}
	c.transmit(now)
}

// sendFlight makes msgs the current flight and sends it; timer says
// whether to wait for an answer (every flight but a server's last).
func (c *Conn) sendFlight(now time.Time, msgs []outMessage, timer bool) {
	c.flight = msgs
	c.retrans, c.rto = 0, c.cfg.RetransmitTimeout
	c.deadline = time.Time{}
	if timer {
		c.deadline = now.Add(c.rto)
	}
	c.transmit(now)
}

// transmit (re)sends the current flight with fresh record numbers.
func (c *Conn) transmit(now time.Time) {
	if c.writeSeq[0] > maxSeq-64 || c.writeSeq[1] > maxSeq-64 {
		c.fail(alertf(AlertInternalError, "record sequence numbers exhausted"))
		return
	}
	c.writeFlight(c.flight)
	c.flightSent = now
	for _, m := range c.flight {
		if m.ccs {
			c.writeEpoch = 1
		}
	}
}

// sendAlert sends one alert record, protected once we write in epoch 1.
func (c *Conn) sendAlert(level, desc uint8) {
	if c.writeEpoch == 1 && c.writeCipher == nil {
		return
	}
	c.out = append(c.out, c.appendRecord(nil, contentAlert, c.writeEpoch, []byte{level, desc}))
}

// fail ends the Conn because of err, sending the fatal alert a local
// *AlertError names.
func (c *Conn) fail(err error) {
	if c.state == stateClosed {
		return
	}
	var ae *AlertError
	if errors.As(err, &ae) && !ae.Remote {
		c.sendAlert(alertLevelFatal, ae.Description)
	}
	c.finish(err)
}

// finish ends the Conn with err and reports it.
func (c *Conn) finish(err error) {
	if c.state == stateClosed {
		return
	}
	c.state, c.err = stateClosed, err
	c.events = append(c.events, Event{Kind: EventClosed, Err: err})
	c.wipe()
}

// wipe zeroes and drops every secret and every buffer of the Conn.
func (c *Conn) wipe() {
	c.deadline = time.Time{}
	clear(c.master)
	c.master = nil
	if c.readCipher != nil {
		c.readCipher.zero()
		c.readCipher = nil
	}
	if c.writeCipher != nil {
		c.writeCipher.zero()
		c.writeCipher = nil
	}
	if c.hs != nil {
		clear(c.hs.transcript)
		for _, m := range c.hs.final {
			clear(m.body)
		}
		c.hs = nil
	}
	for _, m := range c.flight {
		clear(m.body)
	}
	c.flight = nil
	for _, k := range c.ektQueue {
		k.Zero()
	}
	c.ektQueue, c.ektRecords = nil, nil
	clear(c.ektMsg.body)
	for _, r := range c.early {
		clear(r)
	}
	c.early, c.earlyBytes = nil, 0
	c.reasm.reset(0)
	clear(c.clientRandom[:])
	clear(c.serverRandom[:])
}

func (c *Conn) drop(r DropReason) {
	if c.cfg.CountDrop != nil {
		c.cfg.CountDrop(r)
	}
}

// addTranscript appends a received or sent message to the transcript.
func (c *Conn) addTranscript(typ uint8, seq uint16, body []byte) {
	c.hs.transcript = transcriptBytes(c.hs.transcript, typ, seq, body)
}

// nextMessage returns an outgoing message with the next message_seq.
func (c *Conn) nextMessage(typ uint8, epoch uint16, body []byte) outMessage {
	m := outMessage{typ: typ, seq: c.sendSeq, epoch: epoch, body: body}
	c.sendSeq++
	return m
}

// installKeys derives the key block from the master secret and sets up
// both directions of epoch 1.
func (c *Conn) installKeys() error {
	kb := deriveKeyBlock(c.suite, c.master, c.clientRandom[:], c.serverRandom[:])
	defer kb.zero()
	wk, wiv, rk, riv := kb.clientKey, kb.clientIV, kb.serverKey, kb.serverIV
	if c.server {
		wk, wiv, rk, riv = rk, riv, wk, wiv
	}
	w, err := newGCMState(wk, wiv)
	if err != nil {
		return alertf(AlertInternalError, "%v", err)
	}
	r, err := newGCMState(rk, riv)
	if err != nil {
		return alertf(AlertInternalError, "%v", err)
	}
	c.writeCipher, c.readCipher = w, r
	return nil
}

// established moves to the established state and reports it.
func (c *Conn) established() {
	c.state = stateEstablished
	c.peerChain = c.hs.chain
	clear(c.hs.transcript)
	c.hs = nil
	c.postSeq = c.reasm.next
	c.events = append(c.events, Event{Kind: EventHandshakeComplete})
}

// flushACK sends the ACK of the post-handshake records received (client).
func (c *Conn) flushACK() {
	if len(c.ackPending) == 0 || c.state != stateEstablished {
		c.ackPending = c.ackPending[:0]
		return
	}
	// One record within the MTU; what does not fit is acknowledged when
	// the server sends it again.
	recs := c.ackPending[:min(len(c.ackPending), (c.cfg.MTU-recordOverhead-2)/16)]
	c.out = append(c.out, c.appendRecord(nil, contentACK, 1, marshalACK(recs)))
	c.ackPending = c.ackPending[:0]
}
