package keydist

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
	"github.com/mdfast/mdfast/internal/dtlsmsg/piondtls"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// assocState is the life cycle of an association:
// pending -> handshaking -> established -> ended (any state can end).
type assocState int32

const (
	statePending assocState = iota
	stateHandshaking
	stateEstablished
	stateEnded
)

func (s assocState) String() string {
	switch s {
	case statePending:
		return "pending"
	case stateHandshaking:
		return "handshaking"
	case stateEstablished:
		return "established"
	}
	return "ended"
}

// maxQueuedHelloDatagrams bounds the datagrams kept while a ClientHello is
// being reassembled (they are replayed into the DTLS server once it starts).
const maxQueuedHelloDatagrams = 16

// association is one endpoint's DTLS association, identified by the MD's
// identity and the association id.
type association struct {
	k           *KeyDistributor
	key         assocKey
	firstTunnel string
	created     time.Time
	mdProfiles  []uint16

	lastRx   atomic.Int64 // unix nanoseconds of the last datagram
	stateNow atomic.Int32 // mirror of state for lock-free readers

	tunMu sync.Mutex
	tun   tunnelConn // where replies go: the tunnel the last datagram came on

	match atomic.Pointer[Match] // set by verifyPeer
	fail  atomic.Pointer[string]

	mu          sync.Mutex
	state       assocState
	reasm       *dtlsmsg.Reassembler
	queued      [][]byte
	queuedBytes int
	hasTLSID    bool
	tlsID       []byte
	pre         *Match // registry entry named by the ClientHello's tls-id
	allowed     []uint16
	conn        *dtls.Conn
	dc          *dgramConn
	hsCancel    context.CancelFunc
	profile     uint16
	fp          Fingerprint
	hasFP       bool
}

func newAssociation(k *KeyDistributor, key assocKey, t tunnelConn) *association {
	a := &association{
		k:           k,
		key:         key,
		firstTunnel: t.ID(),
		created:     time.Now(),
		tun:         t,
		reasm:       dtlsmsg.NewReassembler(k.cfg.MaxClientHello),
	}
	for _, p := range t.Profiles() {
		a.mdProfiles = append(a.mdProfiles, uint16(p))
	}
	a.lastRx.Store(a.created.UnixNano())
	return a
}

func (a *association) getState() assocState { return assocState(a.stateNow.Load()) }

func (a *association) setState(s assocState) {
	a.state = s
	a.stateNow.Store(int32(s))
}

func (a *association) lastActivity() time.Time { return time.Unix(0, a.lastRx.Load()) }

func (a *association) setTunnel(t tunnelConn) {
	a.tunMu.Lock()
	a.tun = t
	a.tunMu.Unlock()
}

// replaceTunnel moves the association off a tunnel that went down.
func (a *association) replaceTunnel(old, next tunnelConn) {
	a.tunMu.Lock()
	if a.tun == old {
		a.tun = next
	}
	a.tunMu.Unlock()
}

// tunnel returns where to send: the current tunnel, or another live one of
// the same MD.
func (a *association) tunnel() tunnelConn {
	a.tunMu.Lock()
	t := a.tun
	a.tunMu.Unlock()
	if t != nil {
		return t
	}
	t = a.k.liveTunnel(a.key.peer)
	if t != nil {
		a.setTunnel(t)
	}
	return t
}

// sendDtls sends a datagram written by the DTLS server to the endpoint.
func (a *association) sendDtls(b []byte) error {
	for range 2 {
		t := a.tunnel()
		if t == nil {
			return ErrNoTunnel
		}
		err := t.SendTunneledDtls(a.key.id, b)
		if err == nil {
			a.k.m.txDatagrams.Inc()
			return nil
		}
		if !errors.Is(err, tunnel.ErrClosed) {
			return err
		}
		a.replaceTunnel(t, a.k.liveTunnel(a.key.peer))
	}
	return ErrNoTunnel
}

// handleDatagram processes one TunneledDtls payload (b is only valid during
// the call).
func (a *association) handleDatagram(b []byte) {
	a.lastRx.Store(time.Now().UnixNano())
	a.mu.Lock()
	switch a.state {
	case statePending:
		a.handlePending(b) // unlocks
	case stateHandshaking:
		if a.reasm != nil {
			// A second ClientHello (after HelloVerifyRequest) must name the
			// same tls-id as the one the registry check was made on.
			if ch, err := a.reasm.Feed(b); err == nil && ch != nil && !a.sameHello(ch) {
				a.mu.Unlock()
				a.k.drop(reasonHelloChanged, a.tunnel(), a.key.id, nil)
				a.terminate(reasonHelloChanged, alertHandshakeFailure, true)
				return
			}
		}
		dc := a.dc
		a.mu.Unlock()
		dc.deliver(b)
	case stateEstablished:
		dc := a.dc
		a.mu.Unlock()
		dc.deliver(b)
	default:
		a.mu.Unlock()
	}
}

func (a *association) sameHello(ch *dtlsmsg.ClientHello) bool {
	return ch.HasExternalSessionID == a.hasTLSID && bytes.Equal(ch.ExternalSessionID, a.tlsID)
}

// handlePending feeds the ClientHello reassembler; once the ClientHello is
// complete it either rejects the association or starts the DTLS server.
// Called with a.mu held; returns with it released.
func (a *association) handlePending(b []byte) {
	k := a.k
	ch, err := a.reasm.Feed(b)
	if err != nil {
		a.mu.Unlock()
		k.drop(reasonBadClientHello, a.tunnel(), a.key.id, err)
		a.terminate(reasonBadClientHello, 0, true)
		return
	}
	if len(a.queued) >= maxQueuedHelloDatagrams || a.queuedBytes+len(b) > 2*k.cfg.MaxClientHello {
		a.mu.Unlock()
		k.drop(reasonBadClientHello, a.tunnel(), a.key.id, errors.New("too many ClientHello datagrams"))
		a.terminate(reasonBadClientHello, 0, true)
		return
	}
	a.queued = append(a.queued, bytes.Clone(b))
	a.queuedBytes += len(b)
	if ch == nil {
		a.mu.Unlock()
		return
	}
	reason, desc := a.decide(ch)
	if reason == "" {
		if err = a.startServer(ch); err != nil {
			reason, desc = reasonHandshakeFailed, alertHandshakeFailure
		}
	}
	if reason != "" {
		a.mu.Unlock()
		k.m.handshakes.WithLabelValues(reason).Inc()
		k.rl.Log(slog.LevelWarn, reason, "association rejected", "md", a.key.peer, "association", a.key.id,
			"tls_id", printableTLSID(ch), "offered_profiles", ch.SRTPProfiles, "md_profiles", a.mdProfiles, "err", err)
		a.terminate(reason, desc, true)
		return
	}
	queued := a.queued
	a.queued, a.queuedBytes = nil, 0
	dc := a.dc
	a.mu.Unlock()
	k.moved(statePending, stateHandshaking)
	for _, d := range queued {
		dc.deliver(d)
	}
}

func printableTLSID(ch *dtlsmsg.ClientHello) string {
	if !ch.HasExternalSessionID {
		return ""
	}
	if ValidateTLSID(string(ch.ExternalSessionID)) != nil {
		return fmt.Sprintf("%x", ch.ExternalSessionID)
	}
	return string(ch.ExternalSessionID)
}

// decide checks a complete ClientHello against the registry and the
// profiles before any DTLS server state exists. Called with a.mu held.
func (a *association) decide(ch *dtlsmsg.ClientHello) (reason string, alert uint8) {
	snap := a.k.cfg.Registry.current()
	a.hasTLSID = ch.HasExternalSessionID
	a.tlsID = bytes.Clone(ch.ExternalSessionID)
	if ch.HasExternalSessionID {
		m, ok := snap.lookupTLSID(ch.ExternalSessionID)
		if !ok {
			return reasonUnknownTLSID, alertAccessDenied
		}
		a.pre = &m
	} else if !snap.anyLegacy {
		return reasonMissingTLSID, alertAccessDenied
	}
	if !ch.HasUseSRTP {
		return reasonNoUseSRTP, alertHandshakeFailure
	}
	a.allowed = intersectProfiles(ch.SRTPProfiles, a.mdProfiles, a.k.profiles)
	if len(a.allowed) == 0 {
		return reasonNoCommonProfile, alertHandshakeFailure
	}
	return "", 0
}

// startServer creates the pion/dtls server and its goroutine. Called with
// a.mu held.
func (a *association) startServer(ch *dtlsmsg.ClientHello) error {
	k := a.k
	profiles := make([]dtls.SRTPProtectionProfile, len(a.allowed))
	for i, p := range a.allowed {
		profiles[i] = dtls.SRTPProtectionProfile(p)
	}
	opts := []dtls.ServerOption{
		dtls.WithCertificates(k.cfg.Certificate),
		dtls.WithClientAuth(dtls.RequireAnyClientCert),
		dtls.WithSRTPProtectionProfiles(profiles...),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		dtls.WithVerifyPeerCertificate(a.verifyPeer),
		dtls.WithLoggerFactory(pionLoggerFactory{log: k.log}),
	}
	if len(ch.SRTPMKI) > 0 {
		// pion echoes the client's MKI only if it equals its own.
		opts = append(opts, dtls.WithSRTPMasterKeyIdentifier(bytes.Clone(ch.SRTPMKI)))
	}
	if k.cfg.MTU > 0 {
		opts = append(opts, dtls.WithMTU(k.cfg.MTU))
	}
	if k.cfg.FlightInterval > 0 {
		opts = append(opts, dtls.WithFlightInterval(k.cfg.FlightInterval))
	}
	if a.hasTLSID && a.pre != nil {
		// RFC 8844: the server answers with its own external_session_id
		// only when the client sent one (a legacy client would abort on an
		// unsolicited extension).
		hook, err := piondtls.ServerHelloHook([]byte(a.pre.Endpoint.KDTLSID))
		if err != nil {
			return fmt.Errorf("KD tls-id: %w", err)
		}
		opts = append(opts, dtls.WithServerHelloMessageHook(hook))
	}
	dc := newDgramConn(a.key.id, k.cfg.InboundQueueLength, a.sendDtls, func() {
		k.m.drops.WithLabelValues(reasonQueueFull).Inc()
	})
	conn, err := dtls.ServerWithOptions(dc, dc.addr, opts...)
	if err != nil {
		return fmt.Errorf("start DTLS server: %w", err)
	}
	deadline := a.created.Add(k.cfg.HandshakeTimeout)
	ctx, cancel := context.WithDeadline(k.ctx, deadline)
	a.conn, a.dc, a.hsCancel = conn, dc, cancel
	a.setState(stateHandshaking)
	k.wg.Add(1)
	go a.run(ctx, cancel)
	return nil
}

// verifyPeer runs inside the DTLS handshake once the client's Certificate
// and CertificateVerify are in, before the server's final flight exists:
// the tls-id AND the certificate fingerprint must match one registry entry.
func (a *association) verifyPeer(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return a.failWith(reasonFingerprint, errors.New("no client certificate"))
	}
	fp := CertificateFingerprint(rawCerts[0])
	a.mu.Lock()
	a.fp, a.hasFP = fp, true
	hasTLSID, tlsID := a.hasTLSID, a.tlsID
	a.mu.Unlock()
	snap := a.k.cfg.Registry.current()
	var m Match
	if hasTLSID {
		var ok bool
		if m, ok = snap.lookupTLSID(tlsID); !ok {
			return a.failWith(reasonUnknownTLSID, errors.New("tls-id no longer registered"))
		}
		if m.Endpoint.Fingerprint != fp {
			return a.failWith(reasonFingerprint, fmt.Errorf("certificate %s is not the one registered for this tls-id", fp))
		}
	} else {
		var ok bool
		if m, ok = snap.lookupLegacy(fp); !ok {
			return a.failWith(reasonUnknownLegacy, fmt.Errorf("certificate %s is not registered in a conference allowing legacy endpoints", fp))
		}
	}
	a.match.Store(&m)
	return nil
}

func (a *association) failWith(reason string, err error) error {
	a.fail.Store(&reason)
	return fmt.Errorf("%w: %s: %w", ErrRejected, reason, err)
}

// run owns the DTLS server of the association: handshake, MediaKeys, then
// reading until the association ends.
func (a *association) run(ctx context.Context, cancel context.CancelFunc) {
	k := a.k
	defer k.wg.Done()
	err := a.conn.HandshakeContext(ctx)
	cancel()
	if err == nil {
		err = a.deliverKeys()
	}
	if err != nil {
		reason := reasonHandshakeFailed
		switch {
		case a.fail.Load() != nil:
			reason = *a.fail.Load()
		case errors.Is(err, errMediaKeys):
			reason = reasonMediaKeysFailed
		case ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded):
			reason = reasonHandshakeTimeout
		}
		if a.getState() != stateEnded {
			k.m.handshakes.WithLabelValues(reason).Inc()
			k.rl.Log(slog.LevelWarn, reason, "association failed", "md", a.key.peer, "association", a.key.id, "err", err)
		}
		a.terminate(reason, 0, true)
		a.closeConn()
		return
	}
	// Established. Anything the endpoint sends now is alerts (handled by
	// pion) or application data, which means nothing to a KD: discarded.
	buf := make([]byte, 1500)
	for {
		if _, err = a.conn.Read(buf); err != nil {
			var te *dtls.TemporaryError
			if errors.As(err, &te) {
				continue
			}
			break
		}
	}
	a.terminate(reasonPeerClosed, 0, true)
	a.closeConn()
}

var errMediaKeys = errors.New("media keys not delivered")

// deliverKeys exports the keying material, sends MediaKeys and only then
// releases the held final flight.
func (a *association) deliverKeys() error {
	k := a.k
	m := a.match.Load()
	if m == nil {
		return fmt.Errorf("%w: handshake completed without a registry match", errMediaKeys)
	}
	if !k.cfg.Registry.current().stillValid(m) {
		a.fail.Store(ptr(reasonRemoved))
		return fmt.Errorf("%w: endpoint removed during the handshake", errMediaKeys)
	}
	sel, ok := a.conn.SelectedSRTPProtectionProfile()
	profile := uint16(sel)
	if !ok || !slices.Contains(a.allowed, profile) {
		a.fail.Store(ptr(reasonNoCommonProfile))
		return fmt.Errorf("%w: negotiated profile 0x%04x not allowed", errMediaKeys, profile)
	}
	st, ok := a.conn.ConnectionState()
	if !ok {
		return fmt.Errorf("%w: no connection state", errMediaKeys)
	}
	kl, sl, _ := ProfileKeyLengths(profile)
	material, err := st.ExportKeyingMaterial(exporterLabelDTLSSRTP, nil, 2*(kl+sl))
	if err != nil {
		return fmt.Errorf("%w: export keying material: %w", errMediaKeys, err)
	}
	km, err := SplitKeyingMaterial(profile, material)
	if err != nil {
		clear(material)
		return fmt.Errorf("%w: %w", errMediaKeys, err)
	}
	defer km.Zero()
	hbh := km.HopByHop()
	mki, _ := a.conn.RemoteSRTPMasterKeyIdentifier()
	mk := &tunnel.MediaKeys{
		AssociationID:         a.key.id,
		Profile:               tunnel.ProtectionProfile(profile),
		MKI:                   bytes.Clone(mki),
		ClientWriteMasterKey:  hbh.ClientKey,
		ServerWriteMasterKey:  hbh.ServerKey,
		ClientWriteMasterSalt: hbh.ClientSalt,
		ServerWriteMasterSalt: hbh.ServerSalt,
	}
	ctx, cancel := context.WithTimeout(k.ctx, k.cfg.HandshakeTimeout)
	defer cancel()
	if err := a.sendMediaKeys(ctx, mk); err != nil {
		return fmt.Errorf("%w: %w", errMediaKeys, err)
	}
	k.m.mediaKeys.Inc()
	a.mu.Lock()
	if a.state != stateHandshaking {
		a.mu.Unlock()
		return fmt.Errorf("%w: association ended while sending MediaKeys", errMediaKeys)
	}
	a.setState(stateEstablished)
	a.profile = profile
	// Release under a.mu: nothing the DTLS server writes can overtake the
	// held flight, and terminate cannot interleave.
	a.dc.release()
	a.mu.Unlock()
	k.moved(stateHandshaking, stateEstablished)
	k.m.handshakes.WithLabelValues("ok").Inc()
	k.m.hsDuration.Observe(time.Since(a.created).Seconds())
	k.log.Info("association established", "md", a.key.peer, "association", a.key.id,
		"conference", m.Conference, "tls_id", m.Endpoint.TLSID, "legacy", m.Legacy,
		"profile", tunnel.ProtectionProfile(profile).String())
	return nil
}

func ptr[T any](v T) *T { return &v }

// sendMediaKeys writes MediaKeys on the association's tunnel, or on
// another live tunnel of the same MD if that one is closed.
func (a *association) sendMediaKeys(ctx context.Context, mk *tunnel.MediaKeys) error {
	var err error
	for range 2 {
		t := a.tunnel()
		if t == nil {
			return ErrNoTunnel
		}
		if err = t.SendMediaKeys(ctx, mk); err == nil {
			return nil
		}
		if !errors.Is(err, tunnel.ErrClosed) {
			return err
		}
		a.replaceTunnel(t, a.k.liveTunnel(a.key.peer))
	}
	return err
}

// closeConn closes the DTLS server and the adapter (run goroutine only).
func (a *association) closeConn() {
	a.mu.Lock()
	conn, dc := a.conn, a.dc
	a.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
	if dc != nil {
		_ = dc.Close()
	}
}

// terminate ends the association once: it leaves the tables, sends a fatal
// alert to the endpoint if alertDesc is not 0 and no epoch-1 state exists
// yet, closes the DTLS server (close_notify if established), and tells the
// MD with EndpointDisconnect if notifyMD. Safe from any goroutine.
func (a *association) terminate(reason string, alertDesc uint8, notifyMD bool) {
	k := a.k
	a.mu.Lock()
	if a.state == stateEnded {
		a.mu.Unlock()
		return
	}
	prev := a.state
	a.setState(stateEnded)
	conn, dc, cancel := a.conn, a.dc, a.hsCancel
	for _, q := range a.queued {
		clear(q)
	}
	a.queued, a.queuedBytes, a.reasm = nil, 0, nil
	profile := a.profile
	a.mu.Unlock()

	k.forget(a, prev)
	t := a.tunnel()
	if alertDesc != 0 && prev != stateEstablished && t != nil {
		seq := uint64(0)
		if prev == stateHandshaking {
			seq = 1 << 40 // past anything the DTLS server used in epoch 0
		}
		_ = t.SendTunneledDtls(a.key.id, appendAlert(nil, alertDesc, seq))
	}
	switch prev {
	case stateHandshaking:
		if dc != nil {
			dc.discard()
		}
		if cancel != nil {
			cancel()
		}
	case stateEstablished:
		if conn != nil {
			_ = conn.Close() // close_notify; the run goroutine then returns
		}
	}
	if notifyMD && t != nil {
		if err := t.SendEndpointDisconnect(a.key.id); err == nil {
			k.m.disconnectsOut.Inc()
		}
	}
	k.m.ended.WithLabelValues(reason).Inc()
	args := []any{"md", a.key.peer, "association", a.key.id, "reason", reason, "state", prev.String()}
	if m := a.match.Load(); m != nil {
		args = append(args, "conference", m.Conference)
	}
	if prev == stateEstablished {
		args = append(args, "profile", tunnel.ProtectionProfile(profile).String())
		k.log.Info("association ended", args...)
	} else {
		k.rl.Log(slog.LevelInfo, "ended_"+reason, "association ended", args...)
	}
}

// stillRegistered reports whether the registry still allows this
// association (used after registry changes).
func (a *association) stillRegistered(snap *snapshot) bool {
	if m := a.match.Load(); m != nil {
		return snap.stillValid(m)
	}
	a.mu.Lock()
	state, hasTLSID, tlsID := a.state, a.hasTLSID, a.tlsID
	a.mu.Unlock()
	switch {
	case state == statePending:
		return true
	case hasTLSID:
		_, ok := snap.lookupTLSID(tlsID)
		return ok
	default:
		return snap.anyLegacy
	}
}

func (a *association) info() AssociationInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	in := AssociationInfo{MD: a.key.peer, ID: a.key.id, State: a.state.String(), Since: a.created}
	if a.hasTLSID && ValidateTLSID(string(a.tlsID)) == nil {
		in.TLSID = string(a.tlsID)
	}
	if a.hasFP {
		in.Fingerprint = a.fp.String()
	}
	if m := a.match.Load(); m != nil {
		in.Conference = m.Conference
	}
	if a.profile != 0 {
		in.Profile = tunnel.ProtectionProfile(a.profile).String()
	}
	return in
}
