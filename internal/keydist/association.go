package keydist

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// assocState is the life cycle of an association:
// pending -> handshaking -> established -> ended (any state can end).
// pending: no ClientHello accepted yet (cookie exchange, reassembly);
// handshaking: the registry accepted the ClientHello.
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

// association is one endpoint's DTLS association, identified by the MD's
// identity and the association id. Its DTLS server (a dtls.Conn) runs on
// the KD's workers: no goroutine of its own.
type association struct {
	k           *KeyDistributor
	key         assocKey
	firstTunnel string
	instance    uuid.UUID // of the MD process that relays it (uuid.Nil: not announced)
	created     time.Time
	mdProfiles  []uint16

	lastRx   atomic.Int64 // unix nanoseconds of the last datagram
	stateNow atomic.Int32 // mirror of state for lock-free readers

	tunMu sync.Mutex
	tun   tunnelConn // where replies go: the tunnel the last datagram came on

	match atomic.Pointer[Match] // set by verifyPeer
	fail  atomic.Pointer[string]

	mu       sync.Mutex
	state    assocState
	conn     *dtls.Conn
	timer    *time.Timer
	hasTLSID bool
	tlsID    []byte
	allowed  []uint16
	profile  uint16
	ekt      dtls.EKTCipher
	fp       Fingerprint
	hasFP    bool
}

func newAssociation(k *KeyDistributor, key assocKey, t tunnelConn) (*association, error) {
	a := &association{
		k:           k,
		key:         key,
		firstTunnel: t.ID(),
		instance:    t.Instance(),
		created:     time.Now(),
		tun:         t,
	}
	for _, p := range t.Profiles() {
		a.mdProfiles = append(a.mdProfiles, uint16(p))
	}
	cfg := *k.dtlsConfig
	cfg.ClientHello = a.clientHello
	cfg.VerifyPeer = a.verifyPeer
	// An MD whose instance announcement says so runs the cookie exchange
	// itself and relays only ClientHellos that passed it.
	cfg.RelayVerifiesCookies = tunnel.InstanceCaps(a.instance)&tunnel.CapVerifiesCookies != 0
	// The cookie binds the MD's identity and the association id: the
	// endpoint proves it receives what the MD relays to its 5-tuple.
	binding := append([]byte(key.peer), key.id[:]...)
	conn, err := dtls.NewServer(&cfg, binding)
	if err != nil {
		return nil, fmt.Errorf("keydist: DTLS server: %w", err)
	}
	a.conn = conn
	a.lastRx.Store(a.created.UnixNano())
	return a, nil
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

// onTunnel reports whether the association sends on t.
func (a *association) onTunnel(t tunnelConn) bool {
	a.tunMu.Lock()
	defer a.tunMu.Unlock()
	return a.tun == t
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
	t = a.k.liveTunnel(a.key.peer, a.instance)
	if t != nil {
		a.setTunnel(t)
	}
	return t
}

// sendDtls sends a datagram of the DTLS server to the endpoint.
func (a *association) sendDtls(b []byte) error {
	err := a.sendVia(2, func(t tunnelConn) error { return t.SendTunneledDtls(a.key.id, b) })
	if err == nil {
		a.k.m.txDatagrams.Inc()
	}
	return err
}

// sendDisconnect sends EndpointDisconnect on the association's tunnel, or
// another live one of its MD instance if that one has closed. The tunnel
// never refuses it for congestion (it has a lane of its own).
func (a *association) sendDisconnect() error {
	return a.sendVia(3, func(t tunnelConn) error { return t.SendEndpointDisconnect(a.key.id) })
}

// sendVia runs send on the association's tunnel; when that tunnel has
// closed under it, it moves the association to another live tunnel of its
// MD instance and tries again, attempts times in all.
func (a *association) sendVia(attempts int, send func(tunnelConn) error) error {
	for range attempts {
		t := a.tunnel()
		if t == nil {
			return ErrNoTunnel
		}
		err := send(t)
		if err == nil || !errors.Is(err, tunnel.ErrClosed) {
			return err
		}
		a.replaceTunnel(t, a.k.liveTunnel(a.key.peer, a.instance))
	}
	return ErrNoTunnel
}

// handleDatagram processes one TunneledDtls payload on a KD worker.
func (a *association) handleDatagram(b []byte) {
	now := time.Now()
	a.mu.Lock()
	if a.state == stateEnded {
		a.mu.Unlock()
		return
	}
	auth := a.conn.Authenticated()
	_ = a.conn.HandleDatagram(now, b)
	if a.state != stateEstablished || a.conn.Authenticated() != auth {
		// Once established, only records that authenticate prove the
		// endpoint alive: forged ones must not hold off IdleTimeout.
		a.lastRx.Store(now.UnixNano())
	}
	if a.state == statePending && a.conn.AwaitingHello() {
		// A ClientHello without a valid cookie was answered with a
		// HelloVerifyRequest (or nothing useful came): keep no state. The
		// endpoint's next ClientHello makes a new association.
		a.setState(stateEnded)
		out := a.conn.Datagrams()
		a.conn.Close(now)
		a.mu.Unlock()
		a.k.m.helloVerify.Inc()
		a.k.forget(a, statePending)
		for _, d := range out {
			_ = a.sendDtls(d)
		}
		return
	}
	a.afterConn(now) // unlocks
}

// handleTimeout runs the DTLS retransmission timer on a KD worker.
func (a *association) handleTimeout() {
	now := time.Now()
	a.mu.Lock()
	if a.state == stateEnded {
		a.mu.Unlock()
		return
	}
	_ = a.conn.HandleTimeout(now)
	a.afterConn(now) // unlocks
}

// afterConn sends what the DTLS server produced, re-arms its timer and acts
// on its events. Called with a.mu held; returns with it released.
func (a *association) afterConn(now time.Time) {
	out := a.conn.Datagrams()
	events := a.conn.Events()
	a.armTimer()
	a.mu.Unlock()
	for _, d := range out {
		// A datagram that cannot reach the MD is lost like a UDP one:
		// retransmission copes, the lifecycle code ends the association
		// if the MD stays unreachable.
		_ = a.sendDtls(d)
	}
	for _, ev := range events {
		a.handleEvent(ev)
	}
}

// armTimer sets the association's timer to the DTLS server's deadline.
// Called with a.mu held.
func (a *association) armTimer() {
	d := a.conn.Deadline()
	if d.IsZero() {
		if a.timer != nil {
			a.timer.Stop()
		}
		return
	}
	wait := max(time.Until(d), 0)
	if a.timer == nil {
		a.timer = time.AfterFunc(wait, func() { a.k.enqueue(a, nil) })
		return
	}
	a.timer.Reset(wait)
}

func (a *association) handleEvent(ev dtls.Event) {
	switch ev.Kind {
	case dtls.EventKeysReady:
		// MediaKeys goes out on the tunnel before the endpoint can have
		// the KD's Finished (draft section 5.4). The tunnel write may
		// wait; it does so on a goroutine of its own that lives for
		// that write only.
		a.k.wg.Go(a.deliverKeys)
	case dtls.EventHandshakeComplete:
		a.joinEKT()
	case dtls.EventEKTKeyAcked:
		a.k.m.ektKeysAcked.Inc()
	case dtls.EventClosed:
		reason := reasonHandshakeFailed
		var ae *dtls.AlertError
		switch {
		case a.fail.Load() != nil:
			reason = *a.fail.Load()
		case errors.Is(ev.Err, dtls.ErrPeerClosed):
			reason = reasonPeerClosed
		case errors.Is(ev.Err, dtls.ErrTimeout) && a.getState() == stateEstablished:
			reason = reasonEKTNotAcked
		case errors.As(ev.Err, &ae) && ae.Remote:
			reason = reasonEndpointAlert
		}
		st := a.getState()
		if st != stateEstablished {
			a.k.m.handshakes.WithLabelValues(reason).Inc()
			a.k.rl.Log(slog.LevelWarn, reason, "association failed", "md", a.key.peer, "association", a.key.id, "err", ev.Err)
		}
		a.terminate(reason, 0, true)
	}
}

// clientHello is the DTLS server's ClientHello hook: the registry decides
// from the tls-id (RFC 8844), the profile is the endpoint's first offered
// one that the MD and the KD support, EKT comes from the KD's EKT source.
// It runs on the association's worker, under a.mu.
func (a *association) clientHello(info *dtls.ClientHelloInfo) (dtls.ServerSelection, error) {
	k := a.k
	snap := k.cfg.Registry.current()
	a.hasTLSID = info.ExternalSessionID != nil
	a.tlsID = bytes.Clone(info.ExternalSessionID)
	var sel dtls.ServerSelection
	reject := func(reason string, desc uint8, err error) (dtls.ServerSelection, error) {
		a.fail.Store(&reason)
		k.rl.Log(slog.LevelWarn, reason, "association rejected", "md", a.key.peer, "association", a.key.id,
			"tls_id", printableTLSID(info.ExternalSessionID), "offered_profiles", info.SRTPProfiles, "md_profiles", a.mdProfiles)
		return sel, dtls.Alert(desc, fmt.Errorf("%w: %s: %w", ErrRejected, reason, err))
	}
	if a.hasTLSID {
		m, ok := snap.lookupTLSID(info.ExternalSessionID)
		if !ok {
			// With replicas, the tls-id may have been registered through
			// another one a moment ago: catch up with the store once
			// (bounded, coalesced across misses).
			if s := k.cfg.Registry.catchUp(); s != nil {
				snap = s
				m, ok = snap.lookupTLSID(info.ExternalSessionID)
			}
		}
		if !ok {
			return reject(reasonUnknownTLSID, dtls.AlertAccessDenied, errors.New("tls-id not registered"))
		}
		sel.ExternalSessionID = []byte(m.Endpoint.KDTLSID)
	} else if !snap.anyLegacy {
		return reject(reasonMissingTLSID, dtls.AlertAccessDenied, errors.New("no external_session_id"))
	}
	a.allowed = intersectProfiles(info.SRTPProfiles, a.mdProfiles, k.profiles)
	if len(a.allowed) == 0 {
		return reject(reasonNoCommonProfile, dtls.AlertHandshakeFailure, errors.New("no common SRTP profile"))
	}
	// A double profile needs EKT: without the conference's EKTKey the
	// other members could never learn this endpoint's end-to-end key
	// (RFC 8871 section 4.5.2). An endpoint that does not offer the KD's
	// EKT cipher gets its first single profile, if any.
	ekt := k.cfg.EKT.Cipher()
	hasEKT := slices.Contains(info.EKTCiphers, ekt)
	for _, p := range a.allowed {
		if !knownProfiles[p].double || hasEKT {
			sel.SRTPProfile = p
			break
		}
	}
	switch {
	case sel.SRTPProfile == 0:
		return reject(reasonNoEKTCipher, dtls.AlertHandshakeFailure, fmt.Errorf("double profile without the EKT cipher %v", ekt))
	case knownProfiles[sel.SRTPProfile].double:
		sel.EKTCipher = ekt
	}
	a.ekt = sel.EKTCipher
	a.setState(stateHandshaking)
	k.moved(statePending, stateHandshaking)
	return sel, nil
}

func printableTLSID(id []byte) string {
	if id == nil {
		return ""
	}
	if ValidateTLSID(string(id)) != nil {
		return fmt.Sprintf("%x", id)
	}
	return string(id)
}

// verifyPeer runs inside the DTLS handshake once the client's
// CertificateVerify is checked, before the server's final flight exists:
// the tls-id AND the certificate fingerprint must match one registry entry.
// It runs under a.mu.
func (a *association) verifyPeer(chain [][]byte) error {
	fp := CertificateFingerprint(chain[0])
	a.fp, a.hasFP = fp, true
	snap := a.k.cfg.Registry.current()
	var m Match
	if a.hasTLSID {
		var ok bool
		if m, ok = snap.lookupTLSID(a.tlsID); !ok {
			return a.failWith(reasonUnknownTLSID, dtls.AlertAccessDenied, errors.New("tls-id no longer registered"))
		}
		if m.Endpoint.Fingerprint != fp {
			return a.failWith(reasonFingerprint, dtls.AlertBadCertificate, fmt.Errorf("certificate %s is not the one registered for this tls-id", fp))
		}
	} else {
		var ok bool
		if m, ok = snap.lookupLegacy(fp); !ok {
			return a.failWith(reasonUnknownLegacy, dtls.AlertAccessDenied, fmt.Errorf("certificate %s is not registered in a conference allowing legacy endpoints", fp))
		}
	}
	a.match.Store(&m)
	return nil
}

func (a *association) failWith(reason string, desc uint8, err error) error {
	a.fail.Store(&reason)
	return dtls.Alert(desc, fmt.Errorf("%w: %s: %w", ErrRejected, reason, err))
}

var errMediaKeys = errors.New("media keys not delivered")

// deliverKeys exports the keying material, sends MediaKeys and only then
// releases the DTLS server's held final flight.
func (a *association) deliverKeys() {
	if err := a.sendKeys(); err != nil {
		reason := reasonMediaKeysFailed
		if r := a.fail.Load(); r != nil {
			reason = *r
		}
		a.k.m.handshakes.WithLabelValues(reason).Inc()
		a.k.rl.Log(slog.LevelWarn, reason, "association failed", "md", a.key.peer, "association", a.key.id, "err", err)
		a.terminate(reason, dtls.AlertInternalError, true)
		return
	}
	k := a.k
	now := time.Now()
	a.mu.Lock()
	if a.state != stateHandshaking {
		a.mu.Unlock()
		return
	}
	a.setState(stateEstablished)
	_ = a.conn.ReleaseFinalFlight(now)
	m := a.match.Load()
	profile := a.profile
	// Under a.mu: a terminate that follows removes the record after it.
	k.journalAdd(a, m)
	if k.cfg.Publisher != nil {
		k.cfg.Publisher.Established(AssociationInfo{MD: a.key.peer, ID: a.key.id, State: "established", Conference: m.Conference,
			TLSID: m.Endpoint.TLSID, Fingerprint: m.Endpoint.Fingerprint.String(), Since: a.created})
	}
	a.afterConn(now) // unlocks; sends the final flight, then the EKTKey
	k.moved(stateHandshaking, stateEstablished)
	k.m.handshakes.WithLabelValues("ok").Inc()
	k.m.hsDuration.Observe(time.Since(a.created).Seconds())
	k.log.Info("association established", "md", a.key.peer, "association", a.key.id,
		"conference", m.Conference, "tls_id", m.Endpoint.TLSID, "legacy", m.Legacy,
		"profile", tunnel.ProtectionProfile(profile).String(), "ekt", a.ekt != 0)
}

// sendKeys builds MediaKeys from the exported keying material (the outer
// halves only for a double profile) and writes it to the tunnel.
func (a *association) sendKeys() error {
	k := a.k
	m := a.match.Load()
	if m == nil {
		return fmt.Errorf("%w: handshake completed without a registry match", errMediaKeys)
	}
	if !k.cfg.Registry.current().stillValid(m) {
		a.fail.Store(ptr(reasonRemoved))
		return fmt.Errorf("%w: endpoint removed during the handshake", errMediaKeys)
	}
	a.mu.Lock()
	st, ok := a.conn.State()
	var material []byte
	var err error
	if ok {
		kl, sl, _ := ProfileKeyLengths(st.SRTPProfile)
		material, err = a.conn.ExportKeyingMaterial(exporterLabelDTLSSRTP, nil, 2*(kl+sl))
	}
	a.profile = st.SRTPProfile
	a.mu.Unlock()
	switch {
	case !ok:
		return fmt.Errorf("%w: association ended", errMediaKeys)
	case err != nil:
		return fmt.Errorf("%w: export keying material: %w", errMediaKeys, err)
	case !slices.Contains(a.allowed, st.SRTPProfile):
		clear(material)
		return fmt.Errorf("%w: negotiated profile 0x%04x not allowed", errMediaKeys, st.SRTPProfile)
	}
	km, err := SplitKeyingMaterial(st.SRTPProfile, material)
	if err != nil {
		clear(material)
		return fmt.Errorf("%w: %w", errMediaKeys, err)
	}
	defer km.Zero()
	hbh := km.HopByHop()
	mk := &tunnel.MediaKeys{
		AssociationID:         a.key.id,
		Profile:               tunnel.ProtectionProfile(st.SRTPProfile),
		MKI:                   st.SRTPMKI,
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
		a.replaceTunnel(t, a.k.liveTunnel(a.key.peer, a.instance))
	}
	return err
}

// ektConference serialises everything that changes a conference's EKT
// state: reading or replacing its parameter set, its membership, and
// queueing EKTKeys to its members. Under its lock every member is sent the
// sets in the order they were made, and nobody joins between a re-key and
// its sending.
type ektConference struct {
	mu      sync.Mutex
	members map[*association]struct{}
	// sent is the revision (EKTParams.rev) of the newest set queued to
	// the members: a set from the store that is not newer was sent
	// already (by this replica's own re-key) or is superseded.
	sent int64
	// rekeyDue: a re-key that a member's departure needs failed (store
	// unreachable); the janitor tries again.
	rekeyDue bool
}

// lockEKTConf returns conference's EKT state, made when absent, locked.
func (k *KeyDistributor) lockEKTConf(conference string) *ektConference {
	for {
		k.mu.Lock()
		c := k.members[conference]
		if c == nil {
			c = &ektConference{members: map[*association]struct{}{}}
			k.members[conference] = c
		}
		k.mu.Unlock()
		c.mu.Lock()
		k.mu.Lock()
		current := k.members[conference] == c
		k.mu.Unlock()
		if current {
			return c
		}
		c.mu.Unlock() // emptied and dropped meanwhile: take the new one
	}
}

// dropIfEmpty forgets a conference's EKT state once it has no members.
// Called with conf.mu held.
func (k *KeyDistributor) dropIfEmpty(conference string, conf *ektConference) {
	if len(conf.members) != 0 {
		return
	}
	k.mu.Lock()
	if k.members[conference] == conf {
		delete(k.members, conference)
	}
	k.mu.Unlock()
}

// joinEKT runs once the handshake is complete: a member that negotiated
// EKT joins its conference's EKT members and gets the conference's EKTKey
// (RFC 8870 section 5.2.2); with RekeyOnJoin the conference first gets a
// new parameter set, which every member receives.
func (a *association) joinEKT() {
	k := a.k
	m := a.match.Load()
	if a.ekt == 0 || m == nil {
		return
	}
	conf := k.lockEKTConf(m.Conference)
	if a.getState() != stateEstablished {
		// Ended in the meantime: terminate has run leaveEKT already.
		k.dropIfEmpty(m.Conference, conf)
		conf.mu.Unlock()
		return
	}
	params, err := k.cfg.EKT.Current(m.Conference)
	if err == nil && k.cfg.RekeyOnJoin && len(conf.members) > 0 {
		spi := params.SPI
		params.zero()
		if params, err = k.cfg.EKT.Rekey(m.Conference, spi); err == nil {
			k.m.ektRekeys.Inc()
		}
	}
	if err != nil {
		k.dropIfEmpty(m.Conference, conf)
		conf.mu.Unlock()
		k.rl.Log(slog.LevelError, "ekt_key", "no EKT parameter set for the conference", "conference", m.Conference, "err", err)
		a.terminate(reasonEKTUnavailable, dtls.AlertInternalError, true)
		return
	}
	conf.members[a] = struct{}{}
	targets := []*association{a}
	if k.cfg.RekeyOnJoin {
		targets = conf.memberList()
	}
	conf.sent = max(conf.sent, params.rev)
	for _, o := range targets {
		o.queueEKTKey(&params)
	}
	conf.mu.Unlock()
	params.zero()
	for _, o := range targets {
		o.flush()
	}
}

func (c *ektConference) memberList() []*association {
	out := make([]*association, 0, len(c.members))
	for o := range c.members {
		out = append(out, o)
	}
	return out
}

// queueEKTKey queues an EKTKey in the member's DTLS server, which
// retransmits it until the ACK; flush sends it. Called with the
// conference's lock held.
func (a *association) queueEKTKey(p *EKTParams) {
	key := p.EKTKey()
	defer key.Zero()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != stateEstablished {
		return
	}
	if err := a.conn.SendEKTKey(time.Now(), key); err != nil {
		a.k.rl.Log(slog.LevelWarn, "ekt_key", "EKTKey not sent", "association", a.key.id, "spi", p.SPI, "err", err)
		return
	}
	a.k.m.ektKeysSent.Inc()
}

// flush sends what the association's DTLS server has queued and acts on
// its events.
func (a *association) flush() {
	a.mu.Lock()
	if a.state == stateEnded {
		a.mu.Unlock()
		return
	}
	a.afterConn(time.Now()) // unlocks
}

// leaveEKT removes a leaving member from its conference's EKT members:
// the last one takes the parameter set with it, otherwise the conference
// gets a new one, sent to everyone who stays (RFC 8871 section 4.5.2).
func (k *KeyDistributor) leaveEKT(a *association) {
	m := a.match.Load()
	if m == nil {
		return
	}
	k.mu.Lock()
	conf := k.members[m.Conference]
	k.mu.Unlock()
	if conf == nil {
		return
	}
	conf.mu.Lock()
	if _, ok := conf.members[a]; !ok {
		conf.mu.Unlock()
		return
	}
	delete(conf.members, a)
	if len(conf.members) == 0 {
		k.cfg.EKT.Forget(m.Conference)
		k.dropIfEmpty(m.Conference, conf)
		conf.mu.Unlock()
		return
	}
	stay := k.rekeyLocked(m.Conference, conf)
	conf.mu.Unlock()
	for _, o := range stay {
		o.flush()
	}
}

// rekeyLocked gives the conference a new EKT parameter set and queues it
// to every member, whom it returns for flushing. Called with conf.mu held.
func (k *KeyDistributor) rekeyLocked(conference string, conf *ektConference) []*association {
	cur, err := k.cfg.EKT.Current(conference)
	if err == nil {
		spi := cur.SPI
		cur.zero()
		cur, err = k.cfg.EKT.Rekey(conference, spi)
	}
	if err != nil {
		conf.rekeyDue = true
		k.rl.Log(slog.LevelError, "ekt_rekey", "EKT re-key failed; retried by the janitor", "conference", conference, "err", err)
		return nil
	}
	defer cur.zero()
	conf.rekeyDue = false
	if cur.rev != 0 && cur.rev <= conf.sent {
		return nil // another replica's re-key, already sent through ektChanged
	}
	conf.sent = max(conf.sent, cur.rev)
	members := conf.memberList()
	k.m.ektRekeys.Inc()
	k.log.Info("EKT re-key", "conference", conference, "spi", cur.SPI, "members", len(members))
	for _, o := range members {
		o.queueEKTKey(&cur)
	}
	return members
}

// ektChanged is told by the EKT source that conference's set changed
// under the KD (another replica re-keyed it, or it vanished from the store
// and Current makes it again): the members here get the new set exactly as
// after the KD's own re-key.
func (k *KeyDistributor) ektChanged(conference string) {
	k.mu.Lock()
	conf := k.members[conference]
	k.mu.Unlock()
	if conf == nil {
		return
	}
	conf.mu.Lock()
	if len(conf.members) == 0 {
		conf.mu.Unlock()
		return
	}
	p, err := k.cfg.EKT.Current(conference)
	if err != nil {
		conf.mu.Unlock()
		k.rl.Log(slog.LevelError, "ekt_remote", "EKT parameter set changed in the store but could not be read", "conference", conference, "err", err)
		return
	}
	defer p.zero()
	if p.rev <= conf.sent {
		conf.mu.Unlock()
		return
	}
	conf.sent = p.rev
	members := conf.memberList()
	k.m.ektRemoteRekeys.Inc()
	k.log.Info("EKT re-key by another replica", "conference", conference, "spi", p.SPI, "members", len(members))
	for _, o := range members {
		o.queueEKTKey(&p)
	}
	conf.mu.Unlock()
	for _, o := range members {
		o.flush()
	}
}

// terminate ends the association once: it leaves the tables, ends the
// DTLS server (a fatal alert desc if not 0 and the handshake is not done;
// close_notify if established), and tells the MD with EndpointDisconnect
// if notifyMD. Safe from any goroutine.
func (a *association) terminate(reason string, alertDesc uint8, notifyMD bool) {
	k := a.k
	a.mu.Lock()
	if a.state == stateEnded {
		a.mu.Unlock()
		return
	}
	prev := a.state
	a.setState(stateEnded)
	if a.timer != nil {
		a.timer.Stop()
	}
	switch {
	case prev == stateEstablished || alertDesc == 0:
		a.conn.Close(time.Now())
	default:
		a.conn.Abort(alertDesc)
	}
	out := a.conn.Datagrams()
	profile := a.profile
	a.mu.Unlock()

	k.forget(a, prev)
	if prev == stateEstablished {
		k.leaveEKT(a)
		k.journalRemove(a.key)
		if k.cfg.Publisher != nil {
			k.cfg.Publisher.Ended(a.key.peer, a.key.id)
		}
	}
	t := a.tunnel()
	if t != nil {
		for _, d := range out {
			_ = t.SendTunneledDtls(a.key.id, d)
		}
	}
	if notifyMD {
		if err := a.sendDisconnect(); err == nil {
			k.m.disconnectsOut.Inc()
		} else {
			k.m.disconnectsLost.Inc()
			k.rl.Log(slog.LevelWarn, "disconnect_lost", "EndpointDisconnect not sent", "md", a.key.peer, "association", a.key.id, "err", err)
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

// DTLS record header fields the KD reads before any DTLS state exists.
const (
	recordHeaderLen          = 13
	contentHandshake         = 22
	handshakeTypeClientHello = 1
	handshakeHeaderLen       = 12
)

// startsClientHello reports whether the first record of a datagram is an
// epoch-0 handshake record whose fragment is a ClientHello: the only
// datagram that may create state for an unknown association id.
func startsClientHello(b []byte) bool {
	if len(b) < recordHeaderLen+handshakeHeaderLen {
		return false
	}
	return b[0] == contentHandshake && b[1] == 0xfe &&
		binary.BigEndian.Uint16(b[3:5]) == 0 &&
		b[recordHeaderLen] == handshakeTypeClientHello
}
