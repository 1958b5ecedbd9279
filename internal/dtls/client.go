package dtls

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"slices"
	"time"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// The client's side of the handshake (RFC 6347 section 4.2, RFC 5246
// section 7.3), one method per step:
//
//	flight 1  ClientHello                      clientStart
//	flight 2  <- HelloVerifyRequest            clientHelloVerify
//	flight 3  ClientHello with the cookie      clientHelloVerify
//	flight 4  <- ServerHello                   clientServerHello
//	          <- Certificate                   clientCertificate
//	          <- ServerKeyExchange             clientServerKeyExchange
//	          <- CertificateRequest            clientCertificateRequest
//	          <- ServerHelloDone               clientServerHelloDone
//	flight 5  Certificate, ClientKeyExchange, CertificateVerify,
//	          ChangeCipherSpec, Finished       clientServerHelloDone
//	flight 6  <- ChangeCipherSpec, Finished    clientFinished
//	after     <- EKTKey, ACK ->                clientPostHandshake

func (c *Conn) clientStart(now time.Time) error {
	h := &c.hs.hello
	if _, err := rand.Read(h.random[:]); err != nil {
		return alertf(AlertInternalError, "client random: %v", err)
	}
	c.clientRandom = h.random
	h.suites = c.cfg.CipherSuites
	h.groups = c.cfg.Groups
	h.profiles = c.cfg.SRTPProfiles
	h.mki = c.cfg.SRTPMKI
	h.esid = c.cfg.ExternalSessionID
	h.ektCiphers = c.cfg.EKTCiphers
	return c.clientSendHello(now)
}

// clientSendHello sends a ClientHello (the first, or one with a cookie)
// and restarts the transcript with it.
func (c *Conn) clientSendHello(now time.Time) error {
	body, err := marshalClientHello(&c.hs.hello)
	if err != nil {
		return alertf(AlertInternalError, "build ClientHello: %v", err)
	}
	m := c.nextMessage(typeClientHello, 0, body)
	c.hs.transcript = transcriptBytes(c.hs.transcript[:0], m.typ, m.seq, m.body)
	c.sendFlight(now, []outMessage{m}, true)
	return nil
}

func (c *Conn) clientMessage(now time.Time, m *inMessage) error {
	hs := c.hs
	switch {
	case hs.step == cWaitHello && m.typ == typeHelloVerifyRequest:
		return c.clientHelloVerify(now, m)
	case hs.step == cWaitHello && m.typ == typeServerHello:
		return c.clientServerHello(m)
	case hs.step == cWaitCertificate && m.typ == typeCertificate:
		return c.clientCertificate(m)
	case hs.step == cWaitServerKeyExchange && m.typ == typeServerKeyExchange:
		return c.clientServerKeyExchange(m)
	case hs.step == cWaitCertificateRequestOrDone && m.typ == typeCertificateRequest:
		return c.clientCertificateRequest(m)
	case (hs.step == cWaitCertificateRequestOrDone || hs.step == cWaitServerHelloDone) && m.typ == typeServerHelloDone:
		return c.clientServerHelloDone(now, m)
	case hs.step == cWaitFinished && m.typ == typeFinished:
		return c.clientFinished(m)
	}
	return alertf(AlertUnexpectedMessage, "handshake message type %d at client step %d", m.typ, hs.step)
}

func (c *Conn) clientHelloVerify(now time.Time, m *inMessage) error {
	cookie, aerr := parseHelloVerifyRequest(m.body)
	if aerr != nil {
		return aerr
	}
	c.hs.hvrs++
	if c.hs.hvrs > maxHVRs {
		return alertf(AlertUnexpectedMessage, "%d HelloVerifyRequests", c.hs.hvrs)
	}
	c.hs.hello.cookie = cookie
	// The first ClientHello and the HelloVerifyRequest stay out of the
	// transcript (RFC 6347 section 4.2.1).
	return c.clientSendHello(now)
}

// serverHelloExtensions are the extensions a ServerHello may carry: those
// the client sent (RFC 5246 section 7.4.1.4).
func (c *Conn) serverHelloAllowed(typ uint16) bool {
	switch typ {
	case extExtendedMaster, extRenegotiationInfo, extECPointFormats, extUseSRTP:
		return true
	case extSupportedEKTCiphers:
		return len(c.cfg.EKTCiphers) > 0
	case extExternalSessionID:
		return len(c.cfg.ExternalSessionID) > 0
	}
	return false
}

func (c *Conn) clientServerHello(m *inMessage) error {
	sh, err := dtlsmsg.ParseServerHello(m.body)
	if err != nil {
		return helloAlert("ServerHello", err)
	}
	if sh.Version != versionDTLS12 {
		return alertf(AlertProtocolVersion, "ServerHello version %#04x", sh.Version)
	}
	if !slices.Contains(c.hs.hello.suites, sh.CipherSuite) {
		return alertf(AlertIllegalParameter, "ServerHello selects cipher suite %#04x, not offered", sh.CipherSuite)
	}
	if sh.CompressionMethod != 0 {
		return alertf(AlertIllegalParameter, "ServerHello selects compression %d", sh.CompressionMethod)
	}
	ext, aerr := parseHelloExtensions(sh.Extensions, true)
	if aerr != nil {
		return aerr
	}
	for _, t := range ext.types {
		if !c.serverHelloAllowed(t) {
			return alertf(AlertUnsupportedExtension, "ServerHello carries extension %d, not offered", t)
		}
	}
	switch {
	case !ext.ems:
		return alertf(AlertHandshakeFailure, "server did not agree to extended_master_secret")
	case ext.hasRenegInfo && len(ext.renegInfo) != 0:
		return alertf(AlertHandshakeFailure, "non-empty renegotiation_info in an initial handshake")
	case ext.hasPointFmts && !bytes.Contains(ext.pointFormats, []byte{0}):
		return alertf(AlertIllegalParameter, "server does not accept uncompressed points")
	case !sh.HasUseSRTP:
		return alertf(AlertHandshakeFailure, "server did not agree to use_srtp")
	case !slices.Contains(c.cfg.SRTPProfiles, sh.SRTPProfiles[0]):
		return alertf(AlertIllegalParameter, "server selects SRTP profile %#04x, not offered", sh.SRTPProfiles[0])
	case len(sh.SRTPMKI) > 0 && !bytes.Equal(sh.SRTPMKI, c.cfg.SRTPMKI):
		// RFC 5764 section 4.1.1.
		return alertf(AlertIllegalParameter, "server's srtp_mki differs from the one offered")
	case ext.hasEKT && !slices.Contains(c.cfg.EKTCiphers, ext.ektCiphers[0]):
		return alertf(AlertIllegalParameter, "server selects EKT cipher %d, not offered", ext.ektCiphers[0])
	}
	s, _ := suiteByID(sh.CipherSuite)
	c.suite = s
	c.serverRandom = sh.Random
	c.profile = sh.SRTPProfiles[0]
	// An empty srtp_mki from the server means it will not use the MKI
	// (RFC 5764 section 4.1.1): then neither side does.
	c.mki = slices.Clone(sh.SRTPMKI)
	if ext.hasEKT {
		c.ekt = ext.ektCiphers[0]
	}
	if sh.HasExternalSessionID {
		c.peerESID = slices.Clone(sh.ExternalSessionID)
	}
	c.addTranscript(m.typ, m.seq, m.body)
	c.hs.step = cWaitCertificate
	return nil
}

func (c *Conn) clientCertificate(m *inMessage) error {
	chain, aerr := parseCertificate(m.body)
	if aerr != nil {
		return aerr
	}
	if len(chain) == 0 {
		return alertf(AlertHandshakeFailure, "server sent no certificate")
	}
	pub, aerr := peerLeafKey(chain)
	if aerr != nil {
		return aerr
	}
	if rsaKey, _ := keyKind(pub); rsaKey != c.suite.rsa {
		return alertf(AlertUnsupportedCertificate, "server key does not fit cipher suite %#04x", c.suite.id)
	}
	c.hs.chain, c.hs.peerKey = chain, pub
	c.addTranscript(m.typ, m.seq, m.body)
	c.hs.step = cWaitServerKeyExchange
	return nil
}

func (c *Conn) clientServerKeyExchange(m *inMessage) error {
	ske, aerr := parseServerKeyExchange(m.body)
	if aerr != nil {
		return aerr
	}
	if !slices.Contains(c.cfg.Groups, ske.group) {
		return alertf(AlertIllegalParameter, "ServerKeyExchange on group %d, not offered", ske.group)
	}
	rsaKey, _ := keyKind(c.hs.peerKey)
	if !slices.Contains(supportedSchemes, ske.scheme) || !schemeFitsKey(ske.scheme, rsaKey) {
		return alertf(AlertIllegalParameter, "ServerKeyExchange signed with scheme %#04x", uint16(ske.scheme))
	}
	if err := verify(c.hs.peerKey, ske.scheme, ske.signature, c.clientRandom[:], c.serverRandom[:], ecdhParams(ske.group, ske.public)); err != nil {
		return alertf(AlertDecryptError, "ServerKeyExchange: %v", err)
	}
	// The server has shown it holds the certificate's key: now the chain
	// may be judged.
	if err := c.verifyPeer(); err != nil {
		return err
	}
	c.hs.ske = ske
	c.addTranscript(m.typ, m.seq, m.body)
	c.hs.step = cWaitCertificateRequestOrDone
	return nil
}

// verifyPeer hands the peer chain to Config.VerifyPeer.
func (c *Conn) verifyPeer() error {
	if err := c.cfg.VerifyPeer(c.hs.chain); err != nil {
		if ae, ok := err.(*AlertError); ok {
			return ae
		}
		return &AlertError{Description: AlertBadCertificate, Err: fmt.Errorf("peer certificate refused: %w", err)}
	}
	return nil
}

func (c *Conn) clientCertificateRequest(m *inMessage) error {
	cr, aerr := parseCertificateRequest(m.body)
	if aerr != nil {
		return aerr
	}
	c.hs.certReq = cr
	c.addTranscript(m.typ, m.seq, m.body)
	c.hs.step = cWaitServerHelloDone
	return nil
}

func (c *Conn) clientServerHelloDone(now time.Time, m *inMessage) error {
	if len(m.body) != 0 {
		return decodeErr("ServerHelloDone")
	}
	c.addTranscript(m.typ, m.seq, m.body)
	hs := c.hs
	var msgs []outMessage
	var scheme SignatureScheme
	if hs.certReq != nil {
		var ok bool
		if scheme, ok = chooseScheme(c.signer, hs.certReq.schemes); !ok {
			return alertf(AlertHandshakeFailure, "no signature scheme of the CertificateRequest fits our key")
		}
		body, err := marshalCertificate(c.cfg.Certificate.Certificate)
		if err != nil {
			return alertf(AlertInternalError, "build Certificate: %v", err)
		}
		msgs = append(msgs, c.nextMessage(typeCertificate, 0, body))
	}
	curve, _ := curveOf(hs.ske.group)
	priv, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return alertf(AlertInternalError, "ECDHE key: %v", err)
	}
	pms, err := ecdhe(priv, hs.ske.public)
	if err != nil {
		return alertf(AlertIllegalParameter, "%v", err)
	}
	msgs = append(msgs, c.nextMessage(typeClientKeyExchange, 0, marshalClientKeyExchange(priv.PublicKey().Bytes())))
	for _, o := range msgs {
		c.addTranscript(o.typ, o.seq, o.body)
	}
	// RFC 7627 section 4: the session hash covers the transcript through
	// the ClientKeyExchange.
	c.master = extendedMasterSecret(c.suite.hash, pms, transcriptHash(c.suite.hash, hs.transcript))
	clear(pms)
	if hs.certReq != nil {
		sig, err := sign(c.signer, scheme, hs.transcript)
		if err != nil {
			return alertf(AlertInternalError, "CertificateVerify: %v", err)
		}
		body, err := marshalDigitallySigned(scheme, sig)
		if err != nil {
			return alertf(AlertInternalError, "build CertificateVerify: %v", err)
		}
		cv := c.nextMessage(typeCertificateVerify, 0, body)
		c.addTranscript(cv.typ, cv.seq, cv.body)
		msgs = append(msgs, cv)
	}
	if err := c.installKeys(); err != nil {
		return err
	}
	vd := finishedVerifyData(c.suite.hash, c.master, labelClientFinished, transcriptHash(c.suite.hash, hs.transcript))
	fin := c.nextMessage(typeFinished, 1, vd)
	c.addTranscript(fin.typ, fin.seq, fin.body)
	msgs = append(msgs, outMessage{ccs: true}, fin)
	hs.step = cWaitFinished
	c.sendFlight(now, msgs, true)
	return nil
}

func (c *Conn) clientFinished(m *inMessage) error {
	want := finishedVerifyData(c.suite.hash, c.master, labelServerFinished, transcriptHash(c.suite.hash, c.hs.transcript))
	if subtle.ConstantTimeCompare(m.body, want) != 1 {
		return alertf(AlertDecryptError, "server Finished does not verify")
	}
	for _, o := range c.flight {
		clear(o.body)
	}
	c.flight, c.deadline = nil, time.Time{}
	c.established()
	return nil
}

// clientPostHandshake handles a message after the handshake: EKTKey (RFC
// 8870 section 5.2.2) or a HelloRequest, which is refused.
func (c *Conn) clientPostHandshake(m *inMessage) {
	switch m.typ {
	case typeEKTKey:
		if c.ekt == 0 {
			// "If the server did not provide a supported_ekt_ciphers
			// extension in its ServerHello, then EKTKey messages MUST NOT
			// be sent."
			c.fail(alertf(AlertUnexpectedMessage, "EKTKey without a negotiated EKT cipher"))
			return
		}
		k, aerr := parseEKTKey(m.body)
		if aerr != nil {
			c.fail(aerr)
			return
		}
		if err := k.check(c.ekt); err != nil {
			k.Zero()
			c.fail(alertf(AlertIllegalParameter, "%v", err))
			return
		}
		c.events = append(c.events, Event{Kind: EventEKTKey, EKTKey: k})
	case typeHelloRequest:
		c.sendAlert(alertLevelWarning, AlertNoRenegotiation)
	default:
		c.fail(alertf(AlertUnexpectedMessage, "handshake message type %d after the handshake", m.typ))
	}
}
