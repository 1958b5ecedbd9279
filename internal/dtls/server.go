package dtls

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// The server's side of the handshake, one method per step:
//
//	flight 1  <- ClientHello without a valid cookie
//	flight 2  HelloVerifyRequest (stateless)       serverClientHello
//	flight 3  <- ClientHello with the cookie       serverClientHello
//	flight 4  ServerHello, Certificate, ServerKeyExchange,
//	          CertificateRequest, ServerHelloDone  serverClientHello
//	flight 5  <- Certificate                       serverCertificate
//	          <- ClientKeyExchange                 serverClientKeyExchange
//	          <- CertificateVerify                 serverCertificateVerify
//	          <- ChangeCipherSpec, Finished        serverFinished
//	          (EventKeysReady, held until ReleaseFinalFlight)
//	flight 6  ChangeCipherSpec, Finished           releaseFinal
//	after     EKTKey ->, <- ACK                    SendEKTKey, handleACK

func (c *Conn) serverMessage(now time.Time, m *inMessage) error {
	hs := c.hs
	switch {
	case hs.step == sWaitClientHello && m.typ == typeClientHello:
		return c.serverClientHello(now, m)
	case hs.step == sWaitCertificate && m.typ == typeCertificate:
		return c.serverCertificate(m)
	case hs.step == sWaitClientKeyExchange && m.typ == typeClientKeyExchange:
		return c.serverClientKeyExchange(m)
	case hs.step == sWaitCertificateVerify && m.typ == typeCertificateVerify:
		return c.serverCertificateVerify(m)
	case hs.step == sWaitFinished && m.typ == typeFinished:
		return c.serverFinished(now, m)
	}
	return alertf(AlertUnexpectedMessage, "handshake message type %d at server step %d", m.typ, hs.step)
}

func (c *Conn) serverClientHello(now time.Time, m *inMessage) error {
	ch, err := dtlsmsg.ParseClientHello(m.body)
	if err != nil {
		return helloAlert("ClientHello", err)
	}
	ch.MessageSeq = m.seq
	// client_version is the highest the client supports; DTLS versions
	// count down (1.0 = 0xFEFF, 1.2 = 0xFEFD).
	if ch.Version > versionDTLS12 {
		return alertf(AlertProtocolVersion, "client offers DTLS %#04x only", ch.Version)
	}
	relayed := c.cfg.RelayVerifiesCookies && len(ch.Cookie) > 0
	if !c.cfg.DisableHelloVerify && !relayed && !c.cfg.Cookies.valid(now, c.binding, ch) {
		// At most one answer per datagram: a datagram packed with
		// ClientHellos must not buy one HelloVerifyRequest each.
		if !c.hvrSent {
			c.hvrSent = true
			c.sendHelloVerifyRequest(now, m.seq, ch)
		} else {
			c.reasm.reset(m.seq + 1)
			c.drop(DropUnexpected)
		}
		return nil
	}
	ext, aerr := parseHelloExtensions(ch.Extensions, false)
	if aerr != nil {
		return aerr
	}
	sel, err := c.negotiate(ch, &ext)
	if err != nil {
		return err
	}
	hs := c.hs
	c.clientRandom = ch.Random
	c.profile = sel.SRTPProfile
	c.mki = slices.Clone(ch.SRTPMKI)
	c.ekt = sel.EKTCipher
	if ch.HasExternalSessionID {
		c.peerESID = slices.Clone(ch.ExternalSessionID)
	}
	c.addTranscript(m.typ, m.seq, m.body)
	c.reasm.reset(m.seq + 1)
	// The server's message_seq follows the ClientHello it answers (RFC
	// 6347 section 4.2.2), its record numbers those of the ClientHello, as
	// a stateless server's would.
	c.sendSeq = m.seq
	c.writeSeq[0] = max(c.writeSeq[0], hs.recSeqCH)
	if _, err := rand.Read(c.serverRandom[:]); err != nil {
		return alertf(AlertInternalError, "server random: %v", err)
	}

	shp := serverHelloParams{random: c.serverRandom, suite: c.suite.id, profile: sel.SRTPProfile,
		mki: ch.SRTPMKI, ekt: sel.EKTCipher, pointFormats: ext.hasPointFmts,
		// RFC 5746 section 3.6: answered to the extension or to the SCSV.
		renegInfo: ext.hasRenegInfo || slices.Contains(ch.CipherSuites, scsvRenegotiation)}
	if ch.HasExternalSessionID {
		shp.esid = sel.ExternalSessionID
	}
	sh, err := marshalServerHello(&shp)
	if err != nil {
		return alertf(AlertInternalError, "build ServerHello: %v", err)
	}
	cert, err := marshalCertificate(c.cfg.Certificate.Certificate)
	if err != nil {
		return alertf(AlertInternalError, "build Certificate: %v", err)
	}
	curve, _ := curveOf(hs.group)
	if hs.ecdh, err = curve.GenerateKey(rand.Reader); err != nil {
		return alertf(AlertInternalError, "ECDHE key: %v", err)
	}
	pub := hs.ecdh.PublicKey().Bytes()
	sig, err := sign(c.signer, hs.schemeOut, c.clientRandom[:], c.serverRandom[:], ecdhParams(hs.group, pub))
	if err != nil {
		return alertf(AlertInternalError, "ServerKeyExchange: %v", err)
	}
	ske, err := marshalServerKeyExchange(&serverKeyExchange{group: hs.group, public: pub, scheme: hs.schemeOut, signature: sig})
	if err != nil {
		return alertf(AlertInternalError, "build ServerKeyExchange: %v", err)
	}
	cr, err := marshalCertificateRequest()
	if err != nil {
		return alertf(AlertInternalError, "build CertificateRequest: %v", err)
	}
	msgs := []outMessage{
		c.nextMessage(typeServerHello, 0, sh),
		c.nextMessage(typeCertificate, 0, cert),
		c.nextMessage(typeServerKeyExchange, 0, ske),
		c.nextMessage(typeCertificateRequest, 0, cr),
		c.nextMessage(typeServerHelloDone, 0, nil),
	}
	for _, o := range msgs {
		c.addTranscript(o.typ, o.seq, o.body)
	}
	hs.step = sWaitCertificate
	c.sendFlight(now, msgs, true)
	return nil
}

// sendHelloVerifyRequest answers a ClientHello without a valid cookie. It
// keeps no state: the record takes the ClientHello's sequence number, the
// message the ClientHello's message_seq (RFC 6347 section 4.2.1).
func (c *Conn) sendHelloVerifyRequest(now time.Time, seq uint16, ch *dtlsmsg.ClientHello) {
	body := marshalHelloVerifyRequest(c.cfg.Cookies.make(now, c.binding, ch))
	pt := appendHandshakeHeader(make([]byte, 0, handshakeHeaderLen+len(body)), typeHelloVerifyRequest, len(body), seq, 0, len(body))
	pt = append(pt, body...)
	rec := appendRecordHeader(nil, contentHandshake, versionDTLS10, 0, c.hs.recSeqCH, len(pt))
	c.out = append(c.out, append(rec, pt...))
	c.reasm.reset(seq + 1)
}

// negotiate picks the cipher suite, group, signature scheme and the
// DTLS-SRTP parameters for a ClientHello, or refuses it.
func (c *Conn) negotiate(ch *dtlsmsg.ClientHello, ext *helloExtensions) (ServerSelection, error) {
	var sel ServerSelection
	switch {
	case !bytes.Contains(ch.CompressionMethods, []byte{0}):
		return sel, alertf(AlertIllegalParameter, "ClientHello without null compression")
	case ext.hasRenegInfo && len(ext.renegInfo) != 0:
		// RFC 5746 section 3.6.
		return sel, alertf(AlertHandshakeFailure, "non-empty renegotiation_info in an initial handshake")
	case !ext.ems:
		// RFC 7627 section 5.2: a server that requires the extension
		// aborts without it.
		return sel, alertf(AlertHandshakeFailure, "client does not offer extended_master_secret")
	case ext.hasPointFmts && !bytes.Contains(ext.pointFormats, []byte{0}):
		// RFC 8422 section 5.1.2.
		return sel, alertf(AlertIllegalParameter, "client does not accept uncompressed points")
	case !ext.hasSchemes:
		// Without signature_algorithms RFC 5246 implies SHA-1, which is
		// not implemented.
		return sel, alertf(AlertHandshakeFailure, "no signature_algorithms")
	case !ch.HasUseSRTP:
		return sel, alertf(AlertHandshakeFailure, "no use_srtp")
	}
	hs := c.hs
	offered := ext.groups
	if !ext.hasGroups {
		offered = []Group{GroupP256}
	}
	var group Group
	for _, g := range c.cfg.Groups {
		if slices.Contains(offered, g) {
			group = g
			break
		}
	}
	if group == 0 {
		return sel, alertf(AlertHandshakeFailure, "no common group")
	}
	_, ourRSA := c.signer.Public().(*rsa.PublicKey)
	for _, id := range c.cfg.CipherSuites {
		if s, _ := suiteByID(id); s.rsa == ourRSA && slices.Contains(ch.CipherSuites, id) {
			c.suite = s
			break
		}
	}
	if c.suite.id == 0 {
		return sel, alertf(AlertHandshakeFailure, "no common cipher suite")
	}
	scheme, ok := chooseScheme(c.signer, ext.schemes)
	if !ok {
		return sel, alertf(AlertHandshakeFailure, "no common signature scheme")
	}
	hs.schemeOut, hs.group = scheme, group

	info := &ClientHelloInfo{SRTPProfiles: ch.SRTPProfiles, SRTPMKI: ch.SRTPMKI, EKTCiphers: ext.ektCiphers, Hello: ch}
	if ch.HasExternalSessionID {
		info.ExternalSessionID = ch.ExternalSessionID
	}
	if c.cfg.ClientHello != nil {
		var err error
		if sel, err = c.cfg.ClientHello(info); err != nil {
			var ae *AlertError
			if errors.As(err, &ae) {
				return sel, ae
			}
			return sel, &AlertError{Description: AlertHandshakeFailure, Err: fmt.Errorf("ClientHello refused: %w", err)}
		}
	} else {
		sel = c.defaultSelection(info)
	}
	switch {
	case sel.SRTPProfile == 0:
		return sel, alertf(AlertHandshakeFailure, "no common SRTP protection profile (offered %04x)", ch.SRTPProfiles)
	case !slices.Contains(ch.SRTPProfiles, sel.SRTPProfile) || !SRTPProfileKnown(sel.SRTPProfile):
		return sel, alertf(AlertInternalError, "ClientHello hook selects SRTP profile %#04x, not offered", sel.SRTPProfile)
	case sel.EKTCipher != 0 && !slices.Contains(ext.ektCiphers, sel.EKTCipher):
		return sel, alertf(AlertInternalError, "ClientHello hook selects EKT cipher %d, not offered", sel.EKTCipher)
	case sel.EKTCipher != 0 && len(ch.SRTPMKI) > 0:
		// RFC 8870 section 4: "EKT MUST NOT be used in conjunction with
		// SRTP's MKI".
		return sel, alertf(AlertIllegalParameter, "client offers EKT together with an SRTP MKI")
	case len(sel.ExternalSessionID) != 0 && (len(sel.ExternalSessionID) < dtlsmsg.ExternalSessionIDMinLen || len(sel.ExternalSessionID) > dtlsmsg.ExternalSessionIDMaxLen):
		return sel, alertf(AlertInternalError, "ClientHello hook answers with an external_session_id of %d octets", len(sel.ExternalSessionID))
	}
	return sel, nil
}

// defaultSelection is the answer without a ClientHello hook: the server's
// preferred profile and EKT cipher among those offered.
func (c *Conn) defaultSelection(info *ClientHelloInfo) ServerSelection {
	var sel ServerSelection
	for _, p := range c.cfg.SRTPProfiles {
		if slices.Contains(info.SRTPProfiles, p) {
			sel.SRTPProfile = p
			break
		}
	}
	for _, e := range c.cfg.EKTCiphers {
		if slices.Contains(info.EKTCiphers, e) {
			sel.EKTCipher = e
			break
		}
	}
	sel.ExternalSessionID = c.cfg.ExternalSessionID
	return sel
}

func (c *Conn) serverCertificate(m *inMessage) error {
	chain, aerr := parseCertificate(m.body)
	if aerr != nil {
		return aerr
	}
	if len(chain) == 0 {
		return alertf(AlertHandshakeFailure, "client sent no certificate")
	}
	pub, aerr := peerLeafKey(chain)
	if aerr != nil {
		return aerr
	}
	c.hs.chain, c.hs.peerKey = chain, pub
	c.addTranscript(m.typ, m.seq, m.body)
	c.hs.step = sWaitClientKeyExchange
	return nil
}

func (c *Conn) serverClientKeyExchange(m *inMessage) error {
	pub, aerr := parseClientKeyExchange(m.body)
	if aerr != nil {
		return aerr
	}
	pms, err := ecdhe(c.hs.ecdh, pub)
	if err != nil {
		return alertf(AlertIllegalParameter, "%v", err)
	}
	c.hs.ecdh = nil
	c.addTranscript(m.typ, m.seq, m.body)
	c.master = extendedMasterSecret(c.suite.hash, pms, transcriptHash(c.suite.hash, c.hs.transcript))
	clear(pms)
	if err := c.installKeys(); err != nil {
		return err
	}
	c.hs.step = sWaitCertificateVerify
	return nil
}

func (c *Conn) serverCertificateVerify(m *inMessage) error {
	scheme, sig, aerr := parseDigitallySigned(m.body)
	if aerr != nil {
		return aerr
	}
	rsaKey, _ := keyKind(c.hs.peerKey)
	if !slices.Contains(supportedSchemes, scheme) || !schemeFitsKey(scheme, rsaKey) {
		return alertf(AlertIllegalParameter, "CertificateVerify with scheme %#04x", uint16(scheme))
	}
	if err := verify(c.hs.peerKey, scheme, sig, c.hs.transcript); err != nil {
		return alertf(AlertDecryptError, "CertificateVerify: %v", err)
	}
	// The client holds the key of its certificate: judge the chain before
	// anything of the final flight exists.
	if err := c.verifyPeer(); err != nil {
		return err
	}
	c.addTranscript(m.typ, m.seq, m.body)
	c.hs.step = sWaitFinished
	return nil
}

func (c *Conn) serverFinished(now time.Time, m *inMessage) error {
	want := finishedVerifyData(c.suite.hash, c.master, labelClientFinished, transcriptHash(c.suite.hash, c.hs.transcript))
	if subtle.ConstantTimeCompare(m.body, want) != 1 {
		return alertf(AlertDecryptError, "client Finished does not verify")
	}
	c.addTranscript(m.typ, m.seq, m.body)
	vd := finishedVerifyData(c.suite.hash, c.master, labelServerFinished, transcriptHash(c.suite.hash, c.hs.transcript))
	c.hs.final = []outMessage{{ccs: true}, c.nextMessage(typeFinished, 1, vd)}
	// Flight 4 needs no more retransmission: the client has it all.
	for _, o := range c.flight {
		clear(o.body)
	}
	c.flight, c.deadline = nil, time.Time{}
	if c.cfg.HoldFinalFlight {
		c.state = stateHeld
		c.peerChain = c.hs.chain
		c.events = append(c.events, Event{Kind: EventKeysReady})
		return nil
	}
	c.releaseFinal(now)
	return nil
}

// ReleaseFinalFlight sends the server's held ChangeCipherSpec and Finished
// (HoldFinalFlight) and completes the handshake.
func (c *Conn) ReleaseFinalFlight(now time.Time) error {
	switch c.state {
	case stateClosed:
		return c.err
	case stateHeld:
		c.releaseFinal(now)
		return c.err
	}
	return fmt.Errorf("dtls: no final flight held")
}

func (c *Conn) releaseFinal(now time.Time) {
	final := c.hs.final
	c.hs.final = nil
	c.established()
	// The final flight has no timer: it goes again only when the client
	// repeats its own (RFC 6347 section 4.2.4).
	c.sendFlight(now, final, false)
}

// serverPostHandshake handles a message after the handshake: a new
// ClientHello is a renegotiation, refused; nothing else may come.
func (c *Conn) serverPostHandshake(m *inMessage) {
	if m.typ == typeClientHello {
		c.sendAlert(alertLevelWarning, AlertNoRenegotiation)
		return
	}
	c.fail(alertf(AlertUnexpectedMessage, "handshake message type %d after the handshake", m.typ))
}

// SendEKTKey sends an EKTKey to the client (RFC 8870 section 5.2.2) and
// retransmits it until the client's ACK (EventEKTKeyAcked); several are
// sent one after the other, in order. k is copied.
func (c *Conn) SendEKTKey(now time.Time, k EKTKey) error {
	switch {
	case c.state == stateClosed:
		return c.err
	case !c.server || c.state != stateEstablished:
		return ErrNotEstablished
	case c.ekt == 0:
		return ErrNoEKT
	}
	if err := k.check(c.ekt); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	own := &EKTKey{Key: slices.Clone(k.Key), MasterSalt: slices.Clone(k.MasterSalt), SPI: k.SPI, TTL: k.TTL}
	// The key in flight (its message_seq is taken) goes on until its ACK;
	// one still waiting behind it is superseded by the newer one.
	if len(c.ektQueue) > 1 {
		for _, old := range c.ektQueue[1:] {
			old.Zero()
		}
		c.ektQueue = c.ektQueue[:1]
	}
	c.ektQueue = append(c.ektQueue, own)
	if len(c.ektQueue) == 1 {
		c.startEKT(now)
	}
	return nil
}

// startEKT sends the EKTKey at the head of the queue for the first time.
func (c *Conn) startEKT(now time.Time) {
	body, err := marshalEKTKey(c.ektQueue[0])
	if err != nil {
		c.fail(alertf(AlertInternalError, "build EKTKey: %v", err))
		return
	}
	clear(c.ektMsg.body)
	c.ektMsg = c.nextMessage(typeEKTKey, 1, body)
	c.ektRecords = c.ektRecords[:0]
	c.retrans, c.rto = 0, c.cfg.RetransmitTimeout
	c.deadline = now.Add(c.rto)
	c.transmitEKT(now)
}

// transmitEKT (re)sends the EKTKey in flight; the records that carried it
// are remembered for the ACK.
func (c *Conn) transmitEKT(now time.Time) {
	if c.writeSeq[1] > maxSeq-64 {
		c.fail(alertf(AlertInternalError, "record sequence numbers exhausted"))
		return
	}
	for _, r := range c.writeFlight([]outMessage{c.ektMsg}) {
		c.ektRecords = append(c.ektRecords, r.seq)
	}
	c.flightSent = now
}

// handleACK processes an authenticated ACK (RFC 9147 section 7): any
// record of the EKTKey in flight acknowledged completes it (an EKTKey
// always fits one record, see MinMTU).
func (c *Conn) handleACK(now time.Time, b []byte) {
	recs, aerr := parseACK(b)
	if aerr != nil {
		c.fail(aerr)
		return
	}
	if !c.server || c.state != stateEstablished || len(c.ektQueue) == 0 {
		c.drop(DropUnexpected)
		return
	}
	for _, r := range recs {
		if r.epoch == 1 && slices.Contains(c.ektRecords, r.seq) {
			done := c.ektQueue[0]
			c.events = append(c.events, Event{Kind: EventEKTKeyAcked, SPI: done.SPI})
			done.Zero()
			c.ektQueue = c.ektQueue[1:]
			c.deadline = time.Time{}
			clear(c.ektMsg.body)
			c.ektMsg.body = nil
			if len(c.ektQueue) > 0 {
				c.startEKT(now)
			}
			return
		}
	}
}
