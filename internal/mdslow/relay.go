package mdslow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/ratelog"
	"github.com/mdfast/mdfast/internal/slowpkt"
	"github.com/mdfast/mdfast/internal/srtpfast"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// Defaults of the zero fields of Limits.
const (
	DefaultIdleTimeout      = 30 * time.Second
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultMaxPending       = 1024
	DefaultNewPerSecond     = 10
	DefaultNewBurst         = 20
	// DefaultMaxPendingPerPrefix bounds the associations without keys
	// from one source prefix (an IPv4 /24, an IPv6 /48).
	DefaultMaxPendingPerPrefix = 64
	// DefaultConsentTimeout is RFC 7675's consent expiry.
	DefaultConsentTimeout = 30 * time.Second
	// maxRateSources bounds the per-source rate limiter's memory.
	maxRateSources = 65536
	// tableOpTimeout bounds a key table write.
	tableOpTimeout = 2 * time.Second
)

// Tunnel is what the relay sends to the key distributor (a *tunnel.MD).
type Tunnel interface {
	SendTunneledDtls(id uuid.UUID, dtls []byte) error
	SendEndpointDisconnect(id uuid.UUID) error
}

// Sender sends a datagram from a media port to an endpoint (a
// *dataplane.Dataplane).
type Sender interface {
	SendSlow(port uint16, b []byte, dst netip.AddrPort) error
}

// Table is the part of the key table the relay writes (a *keytable.Table).
type Table interface {
	Install(ctx context.Context, a keytable.Association) (*keytable.Endpoint, error)
	Remove(ctx context.Context, id uuid.UUID) error
	SetConference(ctx context.Context, id uuid.UUID, conf keytable.ConferenceID) (*keytable.Endpoint, error)
	SetAddr(ctx context.Context, id uuid.UUID, addr netip.AddrPort) (*keytable.Endpoint, error)
	SetConsent(ctx context.Context, id uuid.UUID, consent bool) (*keytable.Endpoint, error)
	ExpireIdle(ctx context.Context, idle time.Duration) ([]uuid.UUID, error)
}

// Neighbours prepares the data plane's next-hop table (a
// *dataplane.Dataplane): Resolve is called when an endpoint's keys are
// installed, so that its first media packets do not find the table cold;
// Forget when the last association from that IP address has ended.
type Neighbours interface {
	Resolve(addr netip.Addr)
	Forget(addr netip.Addr)
}

// Membership maps an endpoint to its conference: by the tls-id of its
// ClientHello ("" when it sent none), by the session whose ICE check its
// transport address passed (checked, "" when none did within
// CheckedTTL), or by its transport address. ok is false when it places
// the endpoint in no conference: the relay refuses such an endpoint (see
// Relay.refuse), it never guesses one. session is the session the
// endpoint belongs to ("" for none): the one whose tls-id it sent, else
// checked; its association is bound to it when its keys arrive.
type Membership interface {
	Place(tlsID string, addr netip.AddrPort, checked string) (conf keytable.ConferenceID, session string, ok bool)
}

// Limits are the relay's bounds; all can change at run time (SetLimits).
type Limits struct {
	// IdleTimeout ends an association with keys installed that sent no
	// RTP/RTCP for that long (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// HandshakeTimeout ends an association that has no keys that long
	// after its first ClientHello (DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// MaxPending bounds associations without keys (DefaultMaxPending).
	MaxPending int
	// NewPerSecond and NewBurst rate-limit new associations per source IP
	// address (DefaultNewPerSecond, DefaultNewBurst); NewPerSecond < 0
	// disables the limit.
	NewPerSecond float64
	NewBurst     int
	// MaxPendingPerPrefix bounds associations without keys per source
	// prefix, an IPv4 /24 or an IPv6 /48 (DefaultMaxPendingPerPrefix).
	MaxPendingPerPrefix int
	// ConsentTimeout stops sending media to an association bound to a
	// session that sent no authenticated ICE check from its address for
	// that long (RFC 7675; DefaultConsentTimeout).
	ConsentTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.MaxPending <= 0 {
		l.MaxPending = DefaultMaxPending
	}
	if l.NewPerSecond == 0 {
		l.NewPerSecond = DefaultNewPerSecond
	}
	if l.NewBurst <= 0 {
		l.NewBurst = DefaultNewBurst
	}
	if l.MaxPendingPerPrefix <= 0 {
		l.MaxPendingPerPrefix = DefaultMaxPendingPerPrefix
	}
	l.MaxPendingPerPrefix = min(l.MaxPendingPerPrefix, l.MaxPending)
	if l.ConsentTimeout <= 0 {
		l.ConsentTimeout = DefaultConsentTimeout
	}
	return l
}

// Config configures a Relay.
type Config struct {
	Tunnel      Tunnel      // required (set before Run; see SetTunnel)
	Sender      Sender      // required
	Table       Table       // required
	Membership  Membership  // required
	Credentials Credentials // ICE credentials; nil answers every check 401
	Neighbours  Neighbours  // optional (socket mode needs none)
	Limits      Limits
	// SlowPriority is the data plane's priority lane (optional), filled
	// with the datagrams Triage picks; Run serves it first.
	SlowPriority <-chan slowpkt.Packet
	// OnHandshake is told how long each association took from its first
	// ClientHello to its MediaKeys.
	OnHandshake func(time.Duration)
	// OnTunnelState is told the tunnel state changes (metrics).
	OnTunnelState func(peer string, up bool)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Stats are the relay's counters.
type Stats struct {
	Associations, Pending           int64  // current
	Started, Established, Ended     uint64 // associations
	Expired, HandshakeTimeouts      uint64 // ended by the MD for idleness
	ClosedByKD                      uint64 // ended by the KD (EndpointDisconnect)
	Replaced                        uint64 // ended by a new association of the same endpoint
	Evicted                         uint64 // pending, ended to admit another prefix's
	HelloVerify                     uint64 // HelloVerifyRequests sent (no state kept)
	DropBadHello                    uint64 // a ClientHello fragment too short to hold its cookie
	DropAssocBudget                 uint64 // datagrams not relayed to the KD: over their association's budget
	DTLSToKD, DTLSToEndpoint        uint64 // datagrams relayed
	DropNoAssociation               uint64 // DTLS from an unknown 5-tuple, not a ClientHello
	DropRateLimited, DropPendingMax uint64 // new associations refused
	DropTunnel                      uint64 // TunneledDtls not sent (no tunnel, queue full)
	DropSend                        uint64 // datagram to an endpoint not sent
	DropUnknownID                   uint64 // KD message for an unknown association
	InstallErrors                   uint64 // keys refused by the key table
	DuplicateKeys                   uint64 // MediaKeys repeating an association's installed keys, ignored
	STUNAnswered, STUNRejected      uint64 // Binding responses sent
	STUNIgnored                     uint64 // malformed or not a request
	STUNRateLimited                 uint64 // requests over their source's budget
	DropEventQueue                  uint64 // tunnel messages dropped: relay too busy
	DisconnectsLost                 uint64 // EndpointDisconnects that could not be sent
	// Moves counts associations moved to a new address by a nominated
	// ICE check; MovesRefused nominated checks that moved nothing (the
	// address belongs to another association, or the key table refused),
	// MovesRateLimited those within MinMoveInterval of the session's
	// last move.
	Moves, MovesRefused, MovesRateLimited uint64
	// Rebinds counts the moves made on a NAT rebinding's checks (without
	// USE-CANDIDATE; see session.go), included in Moves.
	Rebinds uint64
	// STUNReplayed counts authenticated checks with a transaction ID the
	// session had already used (answered, not acted on).
	STUNReplayed uint64
	// ConsentExpired counts associations that stopped receiving media
	// for want of consent checks; ConsentRestored those that got it back.
	ConsentExpired, ConsentRestored uint64
	// Refused counts the endpoints the Membership placed in no
	// conference, by Refusal.
	Refused [NumRefusals]uint64
}

// Refusal is why an endpoint was refused for want of a conference.
type Refusal int

// The refusals, the reason label of mdfast_endpoints_refused_total.
const (
	// RefusedNoMapping: its ClientHello was complete and no mapping
	// placed it; it got an access_denied alert and the KD no ClientHello.
	RefusedNoMapping Refusal = iota
	// RefusedNoMappingAtKeys: a mapping placed it when its ClientHello
	// arrived but none did when its MediaKeys came (the mapping was
	// removed during the handshake); the keys were not installed.
	RefusedNoMappingAtKeys
	// RefusedMappingRemoved: established, and a mapping change (control
	// API, reload) left it in no conference; it was ended.
	RefusedMappingRemoved
	// NumRefusals is the number of Refusal values.
	NumRefusals
)

// String returns the metric label of f.
func (f Refusal) String() string {
	switch f {
	case RefusedNoMapping:
		return "no_mapping"
	case RefusedNoMappingAtKeys:
		return "no_mapping_at_keys"
	case RefusedMappingRemoved:
		return "mapping_removed"
	}
	return "unknown"
}

type counters struct {
	associations, pending                          atomic.Int64
	started, established, ended                    atomic.Uint64
	expired, handshakeTimeouts                     atomic.Uint64
	closedByKD, replaced, evicted                  atomic.Uint64
	helloVerify, dropBadHello, stunRateLimited     atomic.Uint64
	dropAssocBudget                                atomic.Uint64
	dtlsToKD, dtlsToEndpoint                       atomic.Uint64
	dropNoAssoc, dropRate, dropPending, dropTunnel atomic.Uint64
	dropSend, dropUnknownID, installErrors         atomic.Uint64
	duplicateKeys                                  atomic.Uint64
	stunAnswered, stunRejected, stunIgnored        atomic.Uint64
	dropEvents, disconnectsLost                    atomic.Uint64
	moves, movesRefused, movesRateLimited, rebinds atomic.Uint64
	stunReplayed, consentExpired, consentRestored  atomic.Uint64
	refused                                        [NumRefusals]atomic.Uint64
}

// AssociationInfo describes one association (for the control API).
type AssociationInfo struct {
	ID         uuid.UUID             `json:"id"`
	Addr       netip.AddrPort        `json:"addr"`
	TLSID      string                `json:"tls_id,omitempty"`
	Conference keytable.ConferenceID `json:"conference"`
	State      string                `json:"state"` // "handshake" or "established"
	Since      time.Time             `json:"since"`
	// Profile and ProfileID are the SRTP protection profile of the
	// installed keys, by name and code point.
	Profile   string `json:"profile,omitempty"`
	ProfileID uint16 `json:"profile_id,omitempty"`
	// MDHoldsMediaKey reports whether the keys the MD holds are the whole
	// media key (a single-layer profile: the MD could read the media), as
	// opposed to the hop-by-hop half of a double profile (RFC 8723).
	MDHoldsMediaKey bool `json:"md_holds_media_key"`
}

// association is the relay's state of one endpoint DTLS association.
// Owned by the Run goroutine.
type association struct {
	id          uuid.UUID
	addr        netip.AddrPort
	port        uint16 // the media port it talks to (its prefix: slowpkt.SourcePrefix(addr))
	tlsID       string
	random      [32]byte             // of its ClientHello: a retransmission repeats it
	reasm       *dtlsmsg.Reassembler // until the first ClientHello is complete
	started     time.Time
	established bool
	sentToKD    bool             // a datagram of it went to the KD
	inTable     bool             // false once ExpireIdle took it out
	profile     srtpfast.Profile // of the installed keys
	conf        keytable.ConferenceID
	// toKD limits the datagrams relayed to the KD: an outsider that
	// passed the cookie exchange from its own address must not flood the
	// tunnel that every association shares.
	toKD bucket
	// sess is the session the association is bound to (nil for none):
	// ICE checks for it may move it, and it needs consent.
	sess *session
	// next is the new association the endpoint is negotiating on the same
	// 5-tuple while this one is established (a restart of its DTLS): it
	// replaces this one when its MediaKeys arrive, not before, so that a
	// forged ClientHello costs nothing. prev is the reverse link.
	next, prev *association
}

// event is a message from the tunnel, handed to the Run goroutine.
type event struct {
	kind int
	id   uuid.UUID
	data []byte
	keys *tunnel.MediaKeys
}

const (
	evDTLS = iota
	evKeys
	evDisconnect
)

// Relay is the Media Distributor's slow path: it relays endpoint DTLS to
// the KD and back, installs MediaKeys in the key table, ends associations,
// and answers STUN. Its state is owned by the Run goroutine; the tunnel
// handler methods and the control methods hand work to it.
type Relay struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	limits atomic.Pointer[Limits]
	tun    atomic.Pointer[Tunnel]

	events chan event
	ctl    chan func()
	done   chan struct{}
	once   sync.Once

	// byAddr indexes associations by 5-tuple: the established one, else
	// the pending one. The Run goroutine reads it without a lock and
	// writes it under addrMu; Triage, on the data plane's goroutines,
	// reads it under addrMu.
	addrMu   sync.RWMutex
	byAddr   map[netip.AddrPort]*association
	ipRefs   map[netip.Addr]int // associations with keys installed, per IP address
	stopping bool               // Run is returning: ends skip the per-association table work
	byID     map[uuid.UUID]*association
	limiter  *limiter
	stunLim  *limiter
	cookies  *cookieJar
	prefixes map[netip.Prefix]*prefixState // pending associations per source prefix
	rl       *ratelog.Logger
	// sessions is the ICE state of the sessions whose checks passed
	// (session.go), checked the addresses those checks came from.
	sessions map[string]*session
	checked  map[netip.AddrPort]checkMark

	c counters
}

// New returns a Relay; Run starts it.
func New(cfg Config) (*Relay, error) {
	if cfg.Sender == nil || cfg.Table == nil || cfg.Membership == nil {
		return nil, errors.New("mdslow: new relay: Sender, Table and Membership are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Relay{
		cfg: cfg, log: cfg.Logger.With("component", "slowpath"), now: cfg.Now,
		events: make(chan event, 4096),
		ctl:    make(chan func()),
		done:   make(chan struct{}),
		byAddr: make(map[netip.AddrPort]*association),
		ipRefs: make(map[netip.Addr]int),
		byID:   make(map[uuid.UUID]*association),

		sessions: make(map[string]*session),
		checked:  make(map[netip.AddrPort]checkMark),
	}
	l := cfg.Limits.withDefaults()
	r.limits.Store(&l)
	r.limiter = newLimiter(l.NewPerSecond, l.NewBurst, maxRateSources)
	r.stunLim = newLimiter(stunPerSecond, stunBurst, maxRateSources)
	r.prefixes = make(map[netip.Prefix]*prefixState)
	r.rl = ratelog.New(r.log, 10*time.Second, 100)
	var err error
	if r.cookies, err = newCookieJar(cfg.Now()); err != nil {
		return nil, err
	}
	if cfg.Tunnel != nil {
		r.SetTunnel(cfg.Tunnel)
	}
	return r, nil
}

// SetTunnel sets the tunnel (the tunnel is created with the Relay as its
// handler, so it comes after New).
func (r *Relay) SetTunnel(t Tunnel) { r.tun.Store(&t) }

func (r *Relay) tunnel() Tunnel {
	if p := r.tun.Load(); p != nil {
		return *p
	}
	return nil
}

// SetLimits replaces the limits (zero fields take the defaults).
func (r *Relay) SetLimits(l Limits) {
	l = l.withDefaults()
	r.limits.Store(&l)
}

// Limits returns the limits in force.
func (r *Relay) Limits() Limits { return *r.limits.Load() }

// Stats returns the counters.
func (r *Relay) Stats() Stats {
	c := &r.c
	var refused [NumRefusals]uint64
	for i := range refused {
		refused[i] = c.refused[i].Load()
	}
	return Stats{
		Refused:      refused,
		Associations: c.associations.Load(), Pending: c.pending.Load(),
		Started: c.started.Load(), Established: c.established.Load(), Ended: c.ended.Load(),
		Expired: c.expired.Load(), HandshakeTimeouts: c.handshakeTimeouts.Load(),
		ClosedByKD: c.closedByKD.Load(), Replaced: c.replaced.Load(), Evicted: c.evicted.Load(),
		HelloVerify: c.helloVerify.Load(), DropBadHello: c.dropBadHello.Load(), DropAssocBudget: c.dropAssocBudget.Load(), STUNRateLimited: c.stunRateLimited.Load(),
		DTLSToKD: c.dtlsToKD.Load(), DTLSToEndpoint: c.dtlsToEndpoint.Load(),
		DropNoAssociation: c.dropNoAssoc.Load(), DropRateLimited: c.dropRate.Load(),
		DropPendingMax: c.dropPending.Load(), DropTunnel: c.dropTunnel.Load(),
		DropSend: c.dropSend.Load(), DropUnknownID: c.dropUnknownID.Load(),
		InstallErrors: c.installErrors.Load(), DuplicateKeys: c.duplicateKeys.Load(),
		STUNAnswered: c.stunAnswered.Load(), STUNRejected: c.stunRejected.Load(),
		STUNIgnored: c.stunIgnored.Load(), DropEventQueue: c.dropEvents.Load(), DisconnectsLost: c.disconnectsLost.Load(),
		Moves: c.moves.Load(), MovesRefused: c.movesRefused.Load(), MovesRateLimited: c.movesRateLimited.Load(), Rebinds: c.rebinds.Load(),
		STUNReplayed: c.stunReplayed.Load(), ConsentExpired: c.consentExpired.Load(), ConsentRestored: c.consentRestored.Load(),
	}
}

// HandleTunneledDtls implements tunnel.MDHandler.
func (r *Relay) HandleTunneledDtls(id uuid.UUID, dtls []byte) {
	select {
	case r.events <- event{kind: evDTLS, id: id, data: bytes.Clone(dtls)}:
	default:
		r.c.dropEvents.Add(1)
	}
}

// HandleMediaKeys implements tunnel.MDHandler. It waits (bounded) for room
// in the queue: keys must not be dropped.
func (r *Relay) HandleMediaKeys(mk *tunnel.MediaKeys) {
	c := *mk
	c.MKI = bytes.Clone(mk.MKI)
	c.ClientWriteMasterKey = bytes.Clone(mk.ClientWriteMasterKey)
	c.ServerWriteMasterKey = bytes.Clone(mk.ServerWriteMasterKey)
	c.ClientWriteMasterSalt = bytes.Clone(mk.ClientWriteMasterSalt)
	c.ServerWriteMasterSalt = bytes.Clone(mk.ServerWriteMasterSalt)
	r.enqueueWait(event{kind: evKeys, id: mk.AssociationID, keys: &c})
}

// HandleEndpointDisconnect implements tunnel.MDHandler.
func (r *Relay) HandleEndpointDisconnect(id uuid.UUID) {
	r.enqueueWait(event{kind: evDisconnect, id: id})
}

// TunnelState implements tunnel.MDHandler.
func (r *Relay) TunnelState(peer string, up bool) {
	r.log.Info("tunnel state", "kd", peer, "up", up)
	if r.cfg.OnTunnelState != nil {
		r.cfg.OnTunnelState(peer, up)
	}
}

func (r *Relay) enqueueWait(e event) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case r.events <- e:
	case <-r.done:
		r.c.dropEvents.Add(1)
	case <-t.C:
		r.c.dropEvents.Add(1)
		r.log.Error("slow path too busy: tunnel message dropped", "association", e.id, "kind", e.kind)
	}
}

// do runs f on the Run goroutine and waits for it.
func (r *Relay) do(ctx context.Context, f func()) error {
	fin := make(chan struct{})
	select {
	case r.ctl <- func() { f(); close(fin) }:
	case <-r.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("mdslow: %w", ctx.Err())
	}
	select {
	case <-fin:
		return nil
	case <-r.done:
		return ErrClosed
	}
}

// Associations lists the associations, sorted by start time.
func (r *Relay) Associations(ctx context.Context) ([]AssociationInfo, error) {
	var out []AssociationInfo
	err := r.do(ctx, func() {
		for _, a := range r.byID {
			st := "handshake"
			if a.established {
				st = "established"
			}
			in := AssociationInfo{ID: a.id, Addr: a.addr, TLSID: a.tlsID, Conference: a.conf, State: st, Since: a.started}
			if a.profile != 0 {
				in.Profile, in.ProfileID = a.profile.String(), uint16(a.profile)
				in.MDHoldsMediaKey = !a.profile.IsDouble()
			}
			out = append(out, in)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, err
}

// Reassign re-evaluates the conference of every established association
// (after a membership change) and moves those whose conference changed.
// One that no mapping places any more is ended (EndpointDisconnect to the
// KD, counted as RefusedMappingRemoved): removing an endpoint's mapping
// removes it from its conference, it is never left forwarding to
// receivers it is no longer mapped with. Associations still in their
// handshake are placed when their keys arrive.
func (r *Relay) Reassign(ctx context.Context) error {
	return r.do(ctx, func() {
		for _, a := range r.byID {
			if !a.established {
				continue
			}
			sid := ""
			if a.sess != nil {
				sid = a.sess.id
			}
			conf, _, ok := r.cfg.Membership.Place(a.tlsID, a.addr, sid)
			if !ok {
				r.c.refused[RefusedMappingRemoved].Add(1)
				r.log.Info("association ended: its mapping was removed", "association", a.id, "addr", a.addr, "tls_id", a.tlsID,
					"conference", a.conf, "reason", RefusedMappingRemoved.String())
				r.end(a, true, "mapping removed")
				continue
			}
			if conf == a.conf {
				continue
			}
			tctx, cancel := context.WithTimeout(context.Background(), tableOpTimeout)
			_, err := r.cfg.Table.SetConference(tctx, a.id, conf)
			cancel()
			if err != nil && !errors.Is(err, keytable.ErrGraceTimeout) {
				r.log.Warn("move association to its new conference", "association", a.id, "conference", conf, "err", err)
				continue
			}
			r.log.Info("association moved", "association", a.id, "from", a.conf, "to", conf)
			a.conf = conf
		}
	})
}

// Disconnect ends association id as if it had gone idle (EndpointDisconnect
// to the KD, removal from the key table). It reports whether it existed.
func (r *Relay) Disconnect(ctx context.Context, id uuid.UUID) (bool, error) {
	found := false
	err := r.do(ctx, func() {
		if a := r.byID[id]; a != nil {
			found = true
			r.end(a, true, "control API")
		}
	})
	return found, err
}

// Run serves the slow path until ctx is done or slow is closed: datagrams
// from slow, messages from the tunnel, control calls and timers. On return
// it has queued an EndpointDisconnect for every association on the tunnel
// (the tunnel's control lane: Tunnel.FlushControl-style confirmation is the
// caller's) and forgotten them, in O(associations); their entries stay in
// the key table, which the data plane that is about to close reads.
func (r *Relay) Run(ctx context.Context, slow <-chan slowpkt.Packet) error {
	defer r.once.Do(func() { close(r.done) })
	defer r.shutdown()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	cperiod := consentTick(r.limits.Load().ConsentTimeout)
	ctick := time.NewTicker(cperiod)
	defer ctick.Stop()
	prio := r.cfg.SlowPriority
	for {
		// The priority lane first (see Triage).
		select {
		case p, ok := <-prio:
			if !ok {
				prio = nil
				continue
			}
			r.handlePacket(p)
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return nil
		case p, ok := <-prio:
			if !ok {
				prio = nil
				continue
			}
			r.handlePacket(p)
		case p, ok := <-slow:
			if !ok {
				return nil
			}
			r.handlePacket(p)
		case e := <-r.events:
			r.handleEvent(e)
		case f := <-r.ctl:
			f()
		case <-tick.C:
			r.housekeeping()
		case <-ctick.C:
			r.checkConsent(r.now())
			if p := consentTick(r.limits.Load().ConsentTimeout); p != cperiod {
				cperiod = p
				ctick.Reset(p)
			}
		}
	}
}

// Triage tells the data plane which slow-path datagrams go to the priority
// lane (dataplane.SetSlowTriage): those from a 5-tuple that has an
// association (its handshake's later flights, its alerts, its ICE consent
// checks), and ClientHellos that return a valid cookie (checked here: a
// forged one must not jump the queue). ClientHellos without a cookie and
// STUN from anywhere else, what a flood from spoofed sources is made of, go
// to the fair lane. Safe for concurrent use; it does not allocate.
func (r *Relay) Triage(b []byte, from, to netip.AddrPort) bool {
	r.addrMu.RLock()
	_, ok := r.byAddr[from]
	r.addrMu.RUnlock()
	if ok {
		return true
	}
	if len(b) == 0 || !dtlsmsg.IsDTLS(b[0]) {
		return false
	}
	h, err := parseHelloHead(b)
	return err == nil && len(h.cookie) > 0 && r.cookies.valid(r.now(), from, to.Port(), &h)
}

// setAddr indexes a by its 5-tuple.
func (r *Relay) setAddr(addr netip.AddrPort, a *association) {
	r.addrMu.Lock()
	r.byAddr[addr] = a
	r.addrMu.Unlock()
}

// delAddr removes the 5-tuple's index entry.
func (r *Relay) delAddr(addr netip.AddrPort) {
	r.addrMu.Lock()
	delete(r.byAddr, addr)
	r.addrMu.Unlock()
}

func (r *Relay) handlePacket(p slowpkt.Packet) {
	if len(p.Data) == 0 {
		return
	}
	switch b := p.Data[0]; {
	case b <= 3:
		r.handleSTUN(p)
	case dtlsmsg.IsDTLS(b):
		r.handleDTLS(p)
	}
}

// The STUN responder's per-source budget: ICE checks come a few per
// candidate pair and second at most, consent checks every few seconds.
const (
	stunPerSecond = 20
	stunBurst     = 40
)

func (r *Relay) handleSTUN(p slowpkt.Packet) {
	resp, chk, err := AnswerSTUN(p.Data, p.From, r.cfg.Credentials)
	switch chk.Result {
	case STUNIgnored:
		r.c.stunIgnored.Add(1)
		r.rl.Log(slog.LevelDebug, "stun ignored", "STUN ignored", "from", p.From, "err", err)
		return
	case STUNRejected:
		// Only unauthenticated requests spend their source's budget, so
		// that spoofed junk from an endpoint's address cannot use up what
		// its own consent checks need (RFC 7675); answers are never sent
		// over it, nor larger than the request (a bare header, say): the
		// MD cannot be used to reflect traffic at an address.
		if len(resp) > len(p.Data) {
			r.c.stunIgnored.Add(1)
			return
		}
		if !r.stunLim.allow(p.From.Addr(), r.now()) {
			r.c.stunRateLimited.Add(1)
			return
		}
		r.c.stunRejected.Add(1)
		r.rl.Log(slog.LevelDebug, "stun rejected", "STUN check rejected", "from", p.From, "err", err)
	case STUNAnswered:
		// MESSAGE-INTEGRITY verified with the ICE password the signalling
		// gave: whoever can do that can be answered.
		r.c.stunAnswered.Add(1)
		if chk.Session != "" {
			r.onCheck(p, chk)
		}
	}
	if err := r.cfg.Sender.SendSlow(p.To.Port(), resp, p.From); err != nil {
		r.c.dropSend.Add(1)
	}
}

// epochs reports whether a datagram holds plaintext (epoch 0) records and
// whether it holds protected ones (epoch > 0). The MD cannot authenticate
// either: it only routes them.
func epochs(b []byte) (plain, protected bool) {
	for len(b) > 0 {
		rec, rest, err := dtlsmsg.NextRecord(b)
		if err != nil {
			return
		}
		if rec.Epoch == 0 {
			plain = true
		} else {
			protected = true
		}
		b = rest
	}
	return
}

// handleDTLS routes a DTLS datagram from an endpoint. The MD never ends an
// association on what it receives here: it cannot authenticate a DTLS
// record, so an alert, a protected record or a new ClientHello from an
// established 5-tuple may be forged by anyone who can spoof that address.
// It forwards them to the KD, which can, and which ends the association
// (EndpointDisconnect) when an authenticated record says so.
//
//   - A ClientHello without a valid cookie is answered with a
//     HelloVerifyRequest and forgotten (cookie.go).
//   - A ClientHello with a valid cookie from a new 5-tuple starts an
//     association (admission: rate per source address, pending budget per
//     source prefix and in total, see admit).
//   - A ClientHello with a valid cookie and a new random from an
//     established 5-tuple starts a successor association beside the
//     established one (the endpoint restarted its DTLS); the established
//     one keeps its keys until the successor's MediaKeys arrive.
//   - Anything else goes to the association of its 5-tuple: while a
//     successor negotiates, plaintext records go to the successor and
//     protected ones to both (each KD association discards what does not
//     authenticate under its own keys).
func (r *Relay) handleDTLS(p slowpkt.Packet) {
	now := r.now()
	a := r.byAddr[p.From]
	h, herr := parseHelloHead(p.Data)
	switch {
	case errors.Is(herr, errShortHello):
		r.c.dropBadHello.Add(1)
		return
	case herr == nil:
		if !r.cookies.valid(now, p.From, p.To.Port(), &h) {
			r.helloVerify(now, p, &h)
			return
		}
		var ok bool
		if a, ok = r.helloTarget(now, p, a, &h); !ok {
			return
		}
	case a == nil:
		r.c.dropNoAssoc.Add(1)
		return
	}
	feed := a
	if s := a.next; s != nil && herr != nil {
		// The later fragments of a successor's ClientHello.
		feed = s
	}
	if a := feed; a.reasm != nil {
		if ch, err := a.reasm.Feed(p.Data); ch != nil {
			if ch.HasExternalSessionID {
				a.tlsID = string(ch.ExternalSessionID)
			}
			a.reasm = nil
			if _, _, ok := r.cfg.Membership.Place(a.tlsID, a.addr, r.checkedSession(a.addr, now)); !ok {
				// Before the datagram that completes the ClientHello
				// goes to the KD: the KD never starts a handshake for
				// an endpoint the MD could not forward to anyone.
				r.refuse(a, p.Data)
				return
			}
		} else if err != nil {
			r.rl.Log(slog.LevelDebug, "client hello", "ClientHello", "association", a.id, "err", err)
		}
	}
	if s := a.next; s != nil && herr != nil {
		plain, protected := epochs(p.Data)
		if plain || protected {
			r.toKD(s, p.Data)
		}
		if !protected {
			return
		}
	}
	r.toKD(a, p.Data)
}

// helloTarget returns the association a ClientHello with a valid cookie
// belongs to, creating it when it starts a new handshake. cur is the
// association of its 5-tuple (nil if none).
func (r *Relay) helloTarget(now time.Time, p slowpkt.Packet, cur *association, h *helloHead) (*association, bool) {
	switch {
	case cur == nil:
		a := r.admit(now, p, h)
		return a, a != nil
	case !cur.established:
		if bytes.Equal(cur.random[:], h.random) {
			return cur, true // a retransmission
		}
		// The endpoint started over before its handshake completed (or
		// someone who can see its traffic did): a pending association has
		// no keys to lose.
		r.end(cur, true, "new ClientHello before keys")
		a := r.admit(now, p, h)
		return a, a != nil
	}
	if bytes.Equal(cur.random[:], h.random) {
		// A late retransmission of the established association's own
		// ClientHello: its KD association answers it.
		return cur, true
	}
	if s := cur.next; s != nil {
		if bytes.Equal(s.random[:], h.random) {
			return s, true
		}
		r.end(s, true, "superseded by a newer ClientHello")
	}
	s := r.admit(now, p, h)
	if s == nil {
		return nil, false
	}
	// admit indexed s by address; the established association stays
	// there until s has keys.
	r.setAddr(p.From, cur)
	cur.next, s.prev = s, cur
	return s, true
}

// helloVerify answers a ClientHello that carries no valid cookie.
func (r *Relay) helloVerify(now time.Time, p slowpkt.Packet, h *helloHead) {
	// No budget: the answer is smaller than the ClientHello it answers
	// (no amplification, TestHelloVerifyRequest) and costs no state; the
	// fair lane shares the slow path's time between source prefixes, and
	// a budget per prefix would let a spoofer starve a prefix it chooses.
	var buf [dtlsmsg.RecordHeaderLen + dtlsmsg.HandshakeHeaderLen + 3 + cookieLen]byte
	var cookie [cookieLen]byte
	out := appendHelloVerifyRequest(buf[:0], h, r.cookies.make(cookie[:0], now, p.From, p.To.Port(), h))
	if err := r.cfg.Sender.SendSlow(p.To.Port(), out, p.From); err != nil {
		r.c.dropSend.Add(1)
		return
	}
	r.c.helloVerify.Add(1)
}

// prefixState counts the pending associations of one source prefix, oldest
// first.
type prefixState struct {
	pending []*association
}

// admit starts an association for a ClientHello with a valid cookie, or
// refuses it. The sender has proved it receives at its address, so the
// budgets below hold against spoofed sources. New associations are limited
// per source address (a token bucket); associations without keys are
// bounded per source prefix and in total. At either bound the oldest
// pending association of the prefix holding the most is ended to make room
// (the newcomer's own prefix if it is that one): a flood from some
// prefixes cannot keep another prefix's endpoints out.
func (r *Relay) admit(now time.Time, p slowpkt.Packet, h *helloHead) *association {
	lim := r.limits.Load()
	r.limiter.set(lim.NewPerSecond, lim.NewBurst)
	if lim.NewPerSecond > 0 && !r.limiter.allow(p.From.Addr(), now) {
		r.c.dropRate.Add(1)
		return nil
	}
	pfx := slowpkt.SourcePrefix(p.From.Addr())
	ps := r.prefixes[pfx]
	if ps != nil && len(ps.pending) >= lim.MaxPendingPerPrefix {
		r.evict(ps)
	}
	if r.c.pending.Load() >= int64(lim.MaxPending) {
		// The prefix holding the most pays, the newcomer's own on a tie.
		big := ps
		for _, o := range r.prefixes {
			if big == nil || len(o.pending) > len(big.pending) {
				big = o
			}
		}
		if big == nil || len(big.pending) == 0 {
			r.c.dropPending.Add(1)
			return nil
		}
		r.evict(big)
	}
	id, err := tunnel.NewAssociationID()
	if err != nil {
		r.rl.Log(slog.LevelError, "association id", "new association", "err", err)
		return nil
	}
	a := &association{id: id, addr: p.From, port: p.To.Port(), reasm: dtlsmsg.NewReassembler(0), started: now}
	copy(a.random[:], h.random)
	r.setAddr(p.From, a)
	r.byID[id] = a
	if ps = r.prefixes[pfx]; ps == nil {
		ps = &prefixState{}
		r.prefixes[pfx] = ps
	}
	ps.pending = append(ps.pending, a)
	r.c.pending.Add(1)
	r.c.started.Add(1)
	r.rl.Log(slog.LevelDebug, "started", "association started", "association", id, "addr", p.From)
	return a
}

// evict ends the oldest pending association of ps.
func (r *Relay) evict(ps *prefixState) {
	if len(ps.pending) == 0 {
		return
	}
	r.c.evicted.Add(1)
	r.end(ps.pending[0], true, "pending budget: oldest of its prefix")
}

// unpend takes a out of its prefix's pending list.
func (r *Relay) unpend(a *association) {
	pfx := slowpkt.SourcePrefix(a.addr.Addr())
	ps := r.prefixes[pfx]
	if ps == nil {
		return
	}
	if i := slices.Index(ps.pending, a); i >= 0 {
		ps.pending = slices.Delete(ps.pending, i, i+1)
	}
	if len(ps.pending) == 0 {
		delete(r.prefixes, pfx)
	}
}

// The per-association budget of datagrams relayed to the KD: a handshake
// with retransmissions takes a few dozen, an established association only
// an alert or a re-handshake.
const (
	toKDPerSecond = 50
	toKDBurst     = 100
)

// toKD sends a datagram of association a to the KD.
func (r *Relay) toKD(a *association, b []byte) {
	if !a.toKD.take(r.now(), toKDPerSecond, toKDBurst) {
		r.c.dropAssocBudget.Add(1)
		return
	}
	t := r.tunnel()
	if t == nil {
		r.c.dropTunnel.Add(1)
	} else if err := t.SendTunneledDtls(a.id, b); err != nil {
		r.c.dropTunnel.Add(1)
		r.rl.Log(slog.LevelDebug, "to kd dropped", "DTLS to KD dropped", "association", a.id, "err", err)
	} else {
		a.sentToKD = true
		r.c.dtlsToKD.Add(1)
	}
}

// refuse ends association a, whose ClientHello (completed by datagram b)
// the Membership places in no conference. Where the MD refuses, and why
// there:
//
//   - The tls-id comes in the ClientHello's external_session_id, so the
//     first point where the MD knows every mapping that could place the
//     endpoint is the complete ClientHello; the ClientHello without a
//     cookie is not that point: it comes from an unproven address, and
//     refusing there would let a spoofer make the MD count and log
//     refusals of an address it chooses, and cost a full parse per
//     spoofed datagram instead of one HMAC. After the cookie, the
//     refusal costs what admission already bounds (rate per source
//     address, pending per prefix).
//   - The KD gets nothing of a ClientHello that fits in one datagram (the
//     usual case), so no handshake and no state there; of a fragmented
//     one it got the earlier fragments only, so it gets an
//     EndpointDisconnect that frees them.
//   - The endpoint gets a plaintext fatal access_denied alert (RFC 5246
//     section 7.2.2: access control refused the negotiation), with the
//     record sequence number of the record that completed its
//     ClientHello, as a stateless server answers (RFC 6347 section
//     4.2.1). Its DTLS stack fails at once instead of retransmitting for
//     a minute. The alert is smaller than the datagram it answers.
//
// A mapping added later is for the endpoint's next handshake: this one is
// over. Counted (RefusedNoMapping), logged rate-limited.
func (r *Relay) refuse(a *association, b []byte) {
	r.c.refused[RefusedNoMapping].Add(1)
	var seq uint64
	if rec, _, err := dtlsmsg.NextRecord(b); err == nil {
		seq = rec.Sequence
	}
	var buf [dtlsmsg.RecordHeaderLen + 2]byte
	if err := r.cfg.Sender.SendSlow(a.port, appendAccessDenied(buf[:0], seq), a.addr); err != nil {
		r.c.dropSend.Add(1)
	}
	r.rl.Log(slog.LevelWarn, "refused no mapping", "endpoint refused: no mapping places it in a conference (map its tls-id or address, or configure single-conference)",
		"association", a.id, "addr", a.addr, "tls_id", a.tlsID, "reason", RefusedNoMapping.String())
	r.end(a, a.sentToKD, "refused: no conference mapping")
}

// alertAccessDenied is the fatal access_denied alert (RFC 5246 section
// 7.2: level 2, description 49).
const (
	alertLevelFatal   = 2
	alertAccessDenied = 49
)

// appendAccessDenied appends a plaintext (epoch 0) DTLS record holding a
// fatal access_denied alert with record sequence number seq; the record
// version is DTLS 1.0, as in the HelloVerifyRequest (RFC 6347 section
// 4.2.1), which every DTLS 1.x client accepts before the ServerHello.
func appendAccessDenied(dst []byte, seq uint64) []byte {
	return append(dst, dtlsmsg.ContentTypeAlert, 0xFE, 0xFF, 0, 0,
		byte(seq>>40), byte(seq>>32), byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq),
		0, 2, alertLevelFatal, alertAccessDenied)
}

func (r *Relay) handleEvent(e event) {
	a := r.byID[e.id]
	switch e.kind {
	case evDTLS:
		if a == nil {
			r.c.dropUnknownID.Add(1)
			return
		}
		if err := r.cfg.Sender.SendSlow(a.port, e.data, a.addr); err != nil {
			r.c.dropSend.Add(1)
			r.rl.Log(slog.LevelDebug, "to endpoint dropped", "DTLS to endpoint not sent", "association", a.id, "err", err)
			return
		}
		r.c.dtlsToEndpoint.Add(1)
	case evKeys:
		defer zeroKeys(e.keys)
		if a == nil {
			r.c.dropUnknownID.Add(1)
			// The association ended here first: tell the KD.
			if t := r.tunnel(); t != nil {
				_ = t.SendEndpointDisconnect(e.id)
			}
			return
		}
		r.install(a, e.keys)
	case evDisconnect:
		if a == nil {
			r.c.dropUnknownID.Add(1)
			return
		}
		r.c.closedByKD.Add(1)
		r.end(a, false, "EndpointDisconnect from the KD")
	}
}

func zeroKeys(k *tunnel.MediaKeys) {
	clear(k.ClientWriteMasterKey)
	clear(k.ServerWriteMasterKey)
	clear(k.ClientWriteMasterSalt)
	clear(k.ServerWriteMasterSalt)
}

func (r *Relay) install(a *association, mk *tunnel.MediaKeys) {
	p := srtpfast.Profile(mk.Profile)
	recv, err := srtpfast.NewKeys(p, mk.ClientWriteMasterKey, mk.ClientWriteMasterSalt, mk.MKI)
	var send *srtpfast.Keys
	if err == nil {
		send, err = srtpfast.NewKeys(p, mk.ServerWriteMasterKey, mk.ServerWriteMasterSalt, mk.MKI)
	}
	checked := r.checkedSession(a.addr, r.now())
	if a.sess != nil {
		checked = a.sess.id // a re-key keeps its session
	}
	if err == nil && a.prev != nil {
		// A successor's keys: the endpoint has proved (to the KD) that it
		// restarted its DTLS; the association it replaces ends now, and
		// its address (and session) go to the successor.
		old := a.prev
		if old.sess != nil && checked == "" {
			checked = old.sess.id
		}
		r.c.replaced.Add(1)
		r.end(old, true, "replaced by the endpoint's new association")
		r.setAddr(a.addr, a)
	}
	if err == nil {
		conf, sid, ok := r.cfg.Membership.Place(a.tlsID, a.addr, checked)
		if !ok {
			// Its mapping went away during the handshake: the endpoint
			// has finished its DTLS with the KD, so the MD cannot alert
			// it (epoch 1); the KD hears EndpointDisconnect and the
			// endpoint's media is dropped as from an unknown address.
			r.c.refused[RefusedNoMappingAtKeys].Add(1)
			r.rl.Log(slog.LevelWarn, "refused no mapping at keys", "endpoint refused: its mapping was removed before its keys came",
				"association", a.id, "addr", a.addr, "tls_id", a.tlsID, "reason", RefusedNoMappingAtKeys.String())
			r.end(a, true, "refused: no conference mapping when its keys came")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), tableOpTimeout)
		_, err = r.cfg.Table.Install(ctx, keytable.Association{ID: a.id, Addr: a.addr, Conference: conf, Recv: recv, Send: send})
		cancel()
		if errors.Is(err, keytable.ErrGraceTimeout) {
			err = nil // published
		}
		if errors.Is(err, keytable.ErrSameKeys) {
			// The MediaKeys of an installed association again (a
			// duplicate): it keeps the keys and replay state it has;
			// installing them afresh would accept its media once more.
			r.c.duplicateKeys.Add(1)
			r.rl.Log(slog.LevelWarn, "duplicate keys", "MediaKeys repeat the association's installed keys; ignored",
				"association", a.id, "addr", a.addr)
			return
		}
		if err == nil {
			a.conf = conf
			a.profile = p
			r.setInTable(a, true)
			r.bind(a, sid)
		}
	}
	if err != nil {
		r.c.installErrors.Add(1)
		r.rl.Log(slog.LevelError, "install", "install keys", "association", a.id, "addr", a.addr, "profile", mk.Profile, "err", err)
		r.end(a, true, "keys not installed")
		return
	}
	if !a.established {
		a.established = true
		a.reasm = nil
		r.unpend(a)
		r.c.pending.Add(-1)
		r.c.associations.Add(1)
		r.c.established.Add(1)
		d := r.now().Sub(a.started)
		if r.cfg.OnHandshake != nil {
			r.cfg.OnHandshake(d)
		}
		r.rl.Log(slog.LevelInfo, "established", "association established", "association", a.id, "addr", a.addr, "tls_id", a.tlsID,
			"conference", a.conf, "profile", mk.Profile, "handshake", d)
	}
}

// end forgets association a, removes it from the key table and, when
// notify, tells the KD.
func (r *Relay) end(a *association, notify bool, why string) {
	delete(r.byID, a.id)
	if s := a.sess; s != nil {
		if s.bound == a {
			s.bound = nil
		}
		a.sess = nil
	}
	if s := a.next; s != nil {
		// Its successor, still negotiating, now owns the address.
		s.prev, a.next = nil, nil
		if r.byAddr[a.addr] == a {
			r.setAddr(a.addr, s)
		}
	}
	if p := a.prev; p != nil {
		p.next, a.prev = nil, nil
	}
	if r.byAddr[a.addr] == a {
		r.delAddr(a.addr)
	}
	if a.established {
		r.c.associations.Add(-1)
	} else {
		r.unpend(a)
		r.c.pending.Add(-1)
	}
	if a.inTable && !r.stopping {
		ctx, cancel := context.WithTimeout(context.Background(), tableOpTimeout)
		err := r.cfg.Table.Remove(ctx, a.id)
		cancel()
		if err != nil && !errors.Is(err, keytable.ErrNotFound) && !errors.Is(err, keytable.ErrGraceTimeout) {
			r.log.Warn("remove association from the key table", "association", a.id, "err", err)
		}
		r.setInTable(a, false)
	}
	r.c.ended.Add(1)
	if notify {
		// The tunnel never refuses an EndpointDisconnect for congestion;
		// without a live tunnel it is lost, counted, and the KD ends the
		// association itself when this MD instance's tunnels stay gone.
		err := ErrNoTunnel
		if t := r.tunnel(); t != nil {
			err = t.SendEndpointDisconnect(a.id)
		}
		if err != nil {
			r.c.disconnectsLost.Add(1)
			r.rl.Log(slog.LevelWarn, "disconnect lost", "EndpointDisconnect not sent", "association", a.id, "err", err)
		}
	}
	key := "ended pending" // outsiders with a cookie can cause these
	if a.established {
		key = "ended established"
	}
	r.rl.Log(slog.LevelInfo, key, "association ended", "association", a.id, "addr", a.addr, "reason", why)
}

// shutdown ends every association as Run returns: an EndpointDisconnect
// each, no per-association key-table or next-hop work, one log line.
func (r *Relay) shutdown() {
	r.stopping = true
	n := len(r.byID)
	for _, a := range r.byID {
		r.end(a, true, "shutdown")
	}
	if n > 0 {
		r.log.Info("slow path stopped: associations ended", "associations", n, "endpoint_disconnects_lost", r.c.disconnectsLost.Load())
	}
}

// setInTable records whether a's keys are in the key table, and keeps the
// next-hop table warm: an address is resolved when its first association
// gets keys and forgotten when its last one leaves the table (several
// endpoints can share one address behind a NAT). O(1).
func (r *Relay) setInTable(a *association, in bool) {
	if a.inTable == in {
		return
	}
	a.inTable = in
	ip := a.addr.Addr()
	if in {
		r.ipRefs[ip]++
		if r.ipRefs[ip] == 1 && r.cfg.Neighbours != nil {
			r.cfg.Neighbours.Resolve(ip)
		}
		return
	}
	if r.ipRefs[ip]--; r.ipRefs[ip] <= 0 {
		delete(r.ipRefs, ip)
		if r.cfg.Neighbours != nil {
			r.cfg.Neighbours.Forget(ip)
		}
	}
}

func (r *Relay) housekeeping() {
	now := r.now()
	lim := r.limits.Load()
	ctx, cancel := context.WithTimeout(context.Background(), tableOpTimeout)
	ids, err := r.cfg.Table.ExpireIdle(ctx, lim.IdleTimeout)
	cancel()
	if err != nil && !errors.Is(err, keytable.ErrGraceTimeout) {
		r.log.Warn("expire idle associations", "err", err)
	}
	for _, id := range ids {
		a := r.byID[id]
		if a == nil {
			continue
		}
		r.c.expired.Add(1)
		r.setInTable(a, false) // ExpireIdle removed it
		r.end(a, true, "no RTP/RTCP for "+lim.IdleTimeout.String())
	}
	for _, a := range r.byID {
		if !a.established && now.Sub(a.started) > lim.HandshakeTimeout {
			r.c.handshakeTimeouts.Add(1)
			r.end(a, true, "handshake timeout")
		}
	}
	r.limiter.sweep(now)
	r.stunLim.sweep(now)
	r.sweepSessions(now)
}
