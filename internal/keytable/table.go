package keytable

import (
	"context"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

// Defaults for the zero fields of a Config.
const (
	DefaultMaxAssociations       = 65536
	DefaultMaxSSRCsPerConference = 4096
	// DefaultMaxSSRCsPerLink bounds the live claims of one link
	// association: every remote sender of the conference behind the peer
	// Media Distributor sends through it.
	DefaultMaxSSRCsPerLink = 1024
	DefaultGraceTimeout    = time.Second
	// shardTarget is the number of associations per shard the default
	// shard count aims at (see doc.go for the measurement behind it).
	shardTarget = 128
	maxShards   = 1 << 14
)

// Config configures a Table.
type Config struct {
	// MaxAssociations is the most associations the table holds; Install
	// of one more returns ErrTableFull. Zero means
	// DefaultMaxAssociations.
	MaxAssociations int
	// Shards is the number of shards of a snapshot, a power of two. Zero
	// derives it from MaxAssociations (about 128 associations per shard).
	// One shard is a plain copy-on-write map (install cost grows with the
	// table).
	Shards int
	// MaxSSRCsPerConference bounds the SSRCs a conference holds state for:
	// live claims and SSRCs a present member was sent under an earlier
	// claim. Zero means DefaultMaxSSRCsPerConference.
	MaxSSRCsPerConference int
	// MaxSSRCsPerSender bounds the live claims of one association; its
	// packets under one more SSRC are dropped and counted
	// (Stats.SSRCOverBudget, Endpoint.OverBudget). Zero means
	// DefaultMaxSSRCsPerSender.
	MaxSSRCsPerSender int
	// MaxSSRCsPerLink is MaxSSRCsPerSender for link associations, which
	// carry the SSRCs of all the conference's senders behind a peer Media
	// Distributor. Zero means DefaultMaxSSRCsPerLink; it is capped at
	// MaxSSRCsPerConference. A worker's Opener for a link must track as
	// many SSRCs (dataplane.WorkerConfig.MaxSSRCsPerLink).
	MaxSSRCsPerLink int
	// ClaimContest is the contest period of SSRC takeovers: an owner that
	// sent nothing under its SSRC for this long, or less than half of what
	// colliding senders sent over a period, loses it to the next one (see
	// doc.go). Zero means DefaultClaimContest.
	ClaimContest time.Duration
	// GraceTimeout is how long a write waits for Readers still inside an
	// older batch when its context has no deadline. Zero means
	// DefaultGraceTimeout.
	GraceTimeout time.Duration
	// Now is the clock of idle expiry (install time and ExpireIdle's
	// now); workers pass the same clock, as UnixNano, to Endpoint.Touch.
	// Nil means time.Now.
	Now func() time.Time
}

// Association is what Install needs for one association: what a MediaKeys
// message delivers (ID and keys, built into srtpfast.Keys by the caller)
// plus what the control plane learned (the endpoint's transport address
// from the DTLS 5-tuple, its conference).
type Association struct {
	// ID is the association ID (never uuid.Nil).
	ID uuid.UUID
	// Addr is the endpoint's transport address (valid, port not zero).
	Addr netip.AddrPort
	// Conference is the endpoint's conference.
	Conference ConferenceID
	// Recv opens packets from the endpoint: the client_write keys.
	Recv *srtpfast.Keys
	// Send seals packets to the endpoint: the server_write keys.
	Send *srtpfast.Keys
	// Link marks a link association: the hop to a peer Media Distributor
	// for one conference (RFC 8871 section 4.5.1, cascading; the link
	// manager is internal/cascade). Several link associations share the
	// peer's media address, one per conference, told apart by Tag, which
	// every packet on the hop carries.
	Link bool
	// Tag is the conference's link tag (cascade.Tag of its name), nonzero
	// for a link association, zero otherwise.
	//
	// A link association shares its address only with other links, each
	// with its own Tag; it is never idle-expired (the link manager removes
	// it), always has consent, stays in its conference (SetConference
	// refuses it) and may claim MaxSSRCsPerLink SSRCs. Re-keying keeps
	// Link and Tag.
	Tag uint32
}

// Stats are the Table's counters.
type Stats struct {
	Associations int    // installed associations
	Conferences  int    // conferences with at least one member
	Epoch        uint64 // current snapshot's epoch
	Installs     uint64 // new associations installed
	Rekeys       uint64 // keys replaced by Install of an installed association
	Removes      uint64 // associations removed by Remove
	Expired      uint64 // associations removed by ExpireIdle
	TableFull    uint64 // Installs refused with ErrTableFull
	// SSRCClaims counts SSRCs claimed; SSRCCollisions packets refused
	// because another sender owns the SSRC; StaleClaims packets of a
	// removed, moving or re-keyed endpoint version (or admitted as its
	// claim closed); ClaimsFull claims refused at MaxSSRCsPerConference.
	SSRCClaims, SSRCCollisions, StaleClaims, ClaimsFull uint64
	// SSRCOverBudget counts packets refused because their sender holds
	// MaxSSRCsPerSender claims; SSRCTakeovers claims lost to a contender
	// (the owner was silent or outsent); SSRCRebases claims renewed for a
	// re-keyed sender; IndexDrops packets too far behind a re-based
	// claim's first packet to be given an index above the old range.
	SSRCOverBudget, SSRCTakeovers, SSRCRebases, IndexDrops uint64
	// Misrouted counts Reader.Own refusals: a packet on a worker that
	// does not own the endpoint's receive state.
	Misrouted uint64
	// GraceTimeouts counts writes that returned ErrGraceTimeout.
	GraceTimeouts uint64
}

type counters struct {
	installs, rekeys, removes, expired, tableFull atomic.Uint64
	claims, collisions, staleClaims, claimsFull   atomic.Uint64
	overBudget, takeovers, rebases, indexDrops    atomic.Uint64
	misrouted, graceTimeouts                      atomic.Uint64
}

// Table is the association ⇄ address ⇄ SSRC ⇄ conference table. Workers
// read it through Readers (lock-free, allocation-free); the control plane
// writes it with Install, Remove, SetAddr, SetConference and ExpireIdle,
// which serialize among themselves and never block a reader. All methods
// are safe for concurrent use.
type Table struct {
	cfg  Config
	snap atomic.Pointer[Snapshot]

	// mu serializes writers; the fields below are its.
	mu    sync.Mutex
	byID  map[uuid.UUID]*assoc
	confs map[ConferenceID]*confState
	gen   uint64
	// links counts, per peer address (a key without tag), the link
	// associations using it: its slot holds linkAddr while it is not 0.
	links map[AddrKey]int

	rmu     sync.Mutex // serializes changes of readers
	readers atomic.Pointer[[]*Reader]

	stats counters
}

// New returns an empty Table.
func New(cfg Config) (*Table, error) {
	if cfg.MaxAssociations < 0 || cfg.Shards < 0 || cfg.MaxSSRCsPerConference < 0 || cfg.GraceTimeout < 0 ||
		cfg.MaxSSRCsPerSender < 0 || cfg.MaxSSRCsPerLink < 0 || cfg.ClaimContest < 0 {
		return nil, fmt.Errorf("keytable: new table: %w: negative limit in %+v", ErrInvalid, cfg)
	}
	if cfg.MaxAssociations == 0 {
		cfg.MaxAssociations = DefaultMaxAssociations
	}
	if cfg.Shards == 0 {
		n := (cfg.MaxAssociations + shardTarget - 1) / shardTarget
		cfg.Shards = min(1<<bits.Len(uint(n-1)), maxShards)
	}
	if cfg.Shards&(cfg.Shards-1) != 0 || cfg.Shards > maxShards {
		return nil, fmt.Errorf("keytable: new table: %w: Shards %d is not a power of two up to %d", ErrInvalid, cfg.Shards, maxShards)
	}
	if cfg.MaxSSRCsPerConference == 0 {
		cfg.MaxSSRCsPerConference = DefaultMaxSSRCsPerConference
	}
	if cfg.GraceTimeout == 0 {
		cfg.GraceTimeout = DefaultGraceTimeout
	}
	if cfg.MaxSSRCsPerSender == 0 {
		cfg.MaxSSRCsPerSender = DefaultMaxSSRCsPerSender
	}
	if cfg.MaxSSRCsPerLink == 0 {
		cfg.MaxSSRCsPerLink = DefaultMaxSSRCsPerLink
	}
	cfg.MaxSSRCsPerLink = min(cfg.MaxSSRCsPerLink, cfg.MaxSSRCsPerConference)
	if cfg.ClaimContest == 0 {
		cfg.ClaimContest = DefaultClaimContest
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Table{
		cfg:   cfg,
		byID:  make(map[uuid.UUID]*assoc),
		confs: make(map[ConferenceID]*confState),
		links: make(map[AddrKey]int),
	}
	t.snap.Store(&Snapshot{
		epoch: 1,
		mask:  uint64(cfg.Shards - 1),
		addrs: make([][]addrSlot, cfg.Shards),
		confs: make([][]confSlot, cfg.Shards),
	})
	t.readers.Store(&[]*Reader{})
	return t, nil
}

// Stats returns the current counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	n, nc := len(t.byID), len(t.confs)
	t.mu.Unlock()
	c := &t.stats
	return Stats{
		Associations:   n,
		Conferences:    nc,
		Epoch:          t.snap.Load().epoch,
		Installs:       c.installs.Load(),
		Rekeys:         c.rekeys.Load(),
		Removes:        c.removes.Load(),
		Expired:        c.expired.Load(),
		TableFull:      c.tableFull.Load(),
		SSRCClaims:     c.claims.Load(),
		SSRCCollisions: c.collisions.Load(),
		StaleClaims:    c.staleClaims.Load(),
		ClaimsFull:     c.claimsFull.Load(),
		SSRCOverBudget: c.overBudget.Load(),
		SSRCTakeovers:  c.takeovers.Load(),
		SSRCRebases:    c.rebases.Load(),
		IndexDrops:     c.indexDrops.Load(),
		Misrouted:      c.misrouted.Load(),
		GraceTimeouts:  c.graceTimeouts.Load(),
	}
}

// Get returns the current version of association id (for the control
// plane; workers use a Snapshot).
func (t *Table) Get(id uuid.UUID) (*Endpoint, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a, ok := t.byID[id]; ok {
		return a.cur, true
	}
	return nil, false
}

// Len returns the number of installed associations.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

func (t *Table) publish(x *txn) uint64 {
	t.snap.Store(x.s)
	return x.s.epoch
}

// addrFree reports whether association a (nil: a new one), a link with
// tag when link, may use address ap: a link shares it only with other
// links, each with its own tag; any other association needs it alone.
// Under t.mu.
func (t *Table) addrFree(ap netip.AddrPort, link bool, tag uint32, a *assoc) bool {
	s := t.snap.Load()
	k := KeyOf(ap)
	e := s.get(k)
	if !link {
		return e == nil || (e != linkAddr && e.a == a)
	}
	if e != nil && e != linkAddr {
		return false
	}
	e = s.get(k.withTag(tag))
	return e == nil || e.a == a
}

// linkAddrAdd and linkAddrDel count the link associations at ap in x,
// reserving its slot (linkAddr) for the first and freeing it after the
// last. Under t.mu.
func (t *Table) linkAddrAdd(x *txn, ap netip.AddrPort) {
	k := KeyOf(ap)
	if t.links[k] == 0 {
		x.putKey(k, linkAddr)
	}
	t.links[k]++
}

func (t *Table) linkAddrDel(x *txn, ap netip.AddrPort) {
	k := KeyOf(ap)
	if t.links[k]--; t.links[k] <= 0 {
		delete(t.links, k)
		x.delKey(k)
	}
}

// validAssoc checks what Install needs of a.
func validAssoc(a Association) error {
	switch {
	case a.ID == uuid.Nil || !validAddr(a.Addr) || a.Recv == nil || a.Send == nil:
		return fmt.Errorf("keytable: install %v at %v: %w: need an ID, an address with a port and both keys", a.ID, a.Addr, ErrInvalid)
	case a.Link && a.Tag == 0:
		return fmt.Errorf("keytable: install link %v at %v: %w: a link needs a nonzero tag", a.ID, a.Addr, ErrInvalid)
	case !a.Link && a.Tag != 0:
		return fmt.Errorf("keytable: install %v at %v: %w: tag %#x on an association that is not a link", a.ID, a.Addr, ErrInvalid, a.Tag)
	}
	return nil
}

func validAddr(ap netip.AddrPort) bool {
	return ap.IsValid() && ap.Port() != 0 && !ap.Addr().IsUnspecified()
}

// Install installs the keys of an association, as a MediaKeys message
// delivers them, together with its address and conference.
//
// For a new association the endpoint becomes routable, as one unit (keys,
// address and membership in one published snapshot), to every batch that
// begins after Install returns; Install does not wait.
//
// For an installed association Install is a re-key: Recv and Send are
// replaced (a new Gen) and the address updated; the conference must be
// unchanged (use SetConference). It then waits, like Remove, until no
// worker uses the old keys or address.
//
// It returns ErrInvalid, ErrTableFull, ErrAddrInUse, ErrSameKeys (a
// re-key with the receive keys already installed: refused, see
// ErrSameKeys), or ErrGraceTimeout (re-key published, a reader did not
// finish in time).
func (t *Table) Install(ctx context.Context, a Association) (*Endpoint, error) {
	if err := validAssoc(a); err != nil {
		return nil, err
	}
	t.mu.Lock()
	if as, ok := t.byID[a.ID]; ok {
		return t.rekey(ctx, as, a)
	}
	if len(t.byID) >= t.cfg.MaxAssociations {
		t.mu.Unlock()
		t.stats.tableFull.Add(1)
		return nil, fmt.Errorf("keytable: install %v: %w (%d associations)", a.ID, ErrTableFull, t.cfg.MaxAssociations)
	}
	if !t.addrFree(a.Addr, a.Link, a.Tag, nil) {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: install %v at %v (link %t, tag %#x): %w", a.ID, a.Addr, a.Link, a.Tag, ErrAddrInUse)
	}
	x := newTxn(t.snap.Load())
	ep := t.insertLocked(x, a)
	t.publish(x)
	t.mu.Unlock()
	t.stats.installs.Add(1)
	return ep, nil
}

// insertLocked adds a new association to x. Under t.mu; a is valid.
func (t *Table) insertLocked(x *txn, a Association) *Endpoint {
	t.gen++
	as := &assoc{id: a.ID, serial: t.gen}
	as.lastSeen.Store(t.cfg.Now().UnixNano())
	ep := &Endpoint{id: a.ID, gen: t.gen, addr: a.Addr, conf: a.Conference, recv: a.Recv, send: a.Send, a: as,
		link: a.Link, tag: a.Tag}
	if a.Link {
		as.link = new(linkCounters)
		t.linkAddrAdd(x, a.Addr)
	}
	t.joinLocked(x, ep)
	as.cur = ep
	t.byID[a.ID] = as
	x.putAddr(ep)
	return ep
}

// joinLocked makes ep (with ep.conf set) a member of its conference in x.
func (t *Table) joinLocked(x *txn, ep *Endpoint) {
	_ = t.joinPrepare(ep)
	t.joinCommit(x, ep)
}

// joinPrepare gives ep's association its join sequence number in ep.conf
// (creating the conference) and returns the conference.
func (t *Table) joinPrepare(ep *Endpoint) *confState {
	cs := t.confs[ep.conf]
	if cs == nil {
		cs = newConfState(t, ep.conf)
		t.confs[ep.conf] = cs
	}
	ep.a.joinSeq = cs.seq.Add(1)
	ep.join = ep.a.joinSeq
	return cs
}

func (t *Table) joinCommit(x *txn, ep *Endpoint) {
	cs := t.confs[ep.conf]
	ep.cs = cs
	cs.nmembers++
	ep.a.cs.Store(cs)
	x.addMember(ep)
}

// leaveLocked removes as from its conference in x: no more claims, its
// claims closed, out of the member list; unless it is moving, what it was
// sent is forgotten. It returns the conference (nil if as was not a
// member).
func (t *Table) leaveLocked(x *txn, as *assoc, moving bool) *confState {
	cs := as.cs.Load()
	if cs == nil {
		return nil
	}
	as.cs.Store(nil) // before retire: a claim that follows sees it
	cs.retire(as, as.cur.gen, moving)
	x.delMember(cs.id, as)
	cs.nmembers--
	if cs.nmembers == 0 && t.confs[cs.id] == cs {
		delete(t.confs, cs.id)
	}
	return cs
}

// removeLocked removes as entirely in x.
func (t *Table) removeLocked(x *txn, as *assoc) *confState {
	if as.away != nil { // removed while moving
		as.away.received(member{a: as, gen: as.cur.gen}, false)
		as.away = nil
	}
	cs := t.leaveLocked(x, as, false)
	as.removed.Store(true)
	x.delKey(as.cur.key())
	if as.cur.link {
		t.linkAddrDel(x, as.cur.addr)
	}
	delete(t.byID, as.id)
	return cs
}

// replaceLocked publishes nep as the new version of its association,
// moving its address if it changed. Under t.mu.
func (t *Table) replaceLocked(x *txn, nep *Endpoint) {
	as := nep.a
	if as.cur.addr != nep.addr {
		x.delKey(as.cur.key())
		if nep.link {
			t.linkAddrDel(x, as.cur.addr)
			t.linkAddrAdd(x, nep.addr)
		}
	}
	x.putAddr(nep)
	if nep.cs != nil {
		x.replaceMember(nep)
	}
	as.cur = nep
}

// rekey is Install for an installed association. Called with t.mu held; it
// unlocks.
func (t *Table) rekey(ctx context.Context, as *assoc, a Association) (*Endpoint, error) {
	if a.Conference != as.cur.conf {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: re-key %v: %w: conference %d differs from %d (use SetConference)", a.ID, ErrInvalid, a.Conference, as.cur.conf)
	}
	if a.Link != as.cur.link || a.Tag != as.cur.tag {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: re-key %v: %w: link %t tag %#x differ from link %t tag %#x", a.ID, ErrInvalid, a.Link, a.Tag, as.cur.link, as.cur.tag)
	}
	if a.Recv.Same(as.cur.recv) {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: re-key %v: %w", a.ID, ErrSameKeys)
	}
	if !t.addrFree(a.Addr, a.Link, a.Tag, as) {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: re-key %v at %v: %w", a.ID, a.Addr, ErrAddrInUse)
	}
	nep := *as.cur
	t.gen++
	nep.gen, nep.addr, nep.recv, nep.send = t.gen, a.Addr, a.Recv, a.Send
	x := newTxn(t.snap.Load())
	t.replaceLocked(x, &nep)
	if cs := as.cs.Load(); cs != nil {
		cs.rekeyed(as, nep.gen)
	}
	epoch := t.publish(x)
	t.mu.Unlock()
	t.stats.rekeys.Add(1)
	if err := t.waitGrace(ctx, epoch); err != nil {
		return &nep, fmt.Errorf("keytable: re-key %v: %w", a.ID, err)
	}
	return &nep, nil
}

// Remove removes association id (EndpointDisconnect): its address no longer
// resolves, it leaves its conference's receiver list and its SSRC claims are
// retired. When Remove returns nil, no worker uses a snapshot that contains
// the endpoint: it receives nothing more and nothing from it is forwarded.
// Remove waits for that (the grace period) until ctx is done, or
// Config.GraceTimeout if ctx has no deadline; then it returns an error
// wrapping ErrGraceTimeout (the removal itself is published). It returns
// ErrNotFound for an association that is not installed.
func (t *Table) Remove(ctx context.Context, id uuid.UUID) error {
	t.mu.Lock()
	as, ok := t.byID[id]
	if !ok {
		t.mu.Unlock()
		return fmt.Errorf("keytable: remove %v: %w", id, ErrNotFound)
	}
	x := newTxn(t.snap.Load())
	t.removeLocked(x, as)
	epoch := t.publish(x)
	t.mu.Unlock()
	t.stats.removes.Add(1)
	if err := t.waitGrace(ctx, epoch); err != nil {
		return fmt.Errorf("keytable: remove %v: %w", id, err)
	}
	return nil
}

// SetAddr changes the transport address of association id (learned on the
// slow path). When it returns nil no worker resolves the old address to the
// endpoint or sends to it. The key generation is unchanged: the worker that
// owns the receive side keeps it (see Reader.Own). It returns ErrInvalid,
// ErrNotFound, ErrAddrInUse or ErrGraceTimeout (change published).
func (t *Table) SetAddr(ctx context.Context, id uuid.UUID, addr netip.AddrPort) (*Endpoint, error) {
	if !validAddr(addr) {
		return nil, fmt.Errorf("keytable: set address of %v to %v: %w", id, addr, ErrInvalid)
	}
	t.mu.Lock()
	as, ok := t.byID[id]
	if !ok {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: set address of %v: %w", id, ErrNotFound)
	}
	if as.cur.addr == addr {
		t.mu.Unlock()
		return as.cur, nil
	}
	if !t.addrFree(addr, as.cur.link, as.cur.tag, as) {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: set address of %v to %v: %w", id, addr, ErrAddrInUse)
	}
	nep := *as.cur
	nep.addr = addr
	x := newTxn(t.snap.Load())
	t.replaceLocked(x, &nep)
	epoch := t.publish(x)
	t.mu.Unlock()
	if err := t.waitGrace(ctx, epoch); err != nil {
		return &nep, fmt.Errorf("keytable: set address of %v: %w", id, err)
	}
	return &nep, nil
}

// SetConsent sets whether association id receives media (RFC 7675 consent
// freshness: an endpoint that stopped proving it wants media gets none).
// Without consent the endpoint stays in its conference (its address
// resolves, its media is forwarded to the others, its SSRC history is
// kept) but is left out of Snapshot.Receivers, so workers pay nothing per
// packet for it. The key generation and address are unchanged. When it
// returns nil after taking consent away, no worker sends to the endpoint.
// A link association always has consent: taking it away returns
// ErrInvalid (the link manager removes a dead link instead). It returns
// ErrNotFound or ErrGraceTimeout (change published).
func (t *Table) SetConsent(ctx context.Context, id uuid.UUID, consent bool) (*Endpoint, error) {
	t.mu.Lock()
	as, ok := t.byID[id]
	if !ok {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: set consent of %v: %w", id, ErrNotFound)
	}
	if as.cur.link && !consent {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: set consent of link %v: %w: a link association always has consent", id, ErrInvalid)
	}
	if as.cur.noConsent == !consent {
		t.mu.Unlock()
		return as.cur, nil
	}
	nep := *as.cur
	nep.noConsent = !consent
	x := newTxn(t.snap.Load())
	t.replaceLocked(x, &nep)
	epoch := t.publish(x)
	t.mu.Unlock()
	if err := t.waitGrace(ctx, epoch); err != nil {
		return &nep, fmt.Errorf("keytable: set consent of %v: %w", id, err)
	}
	return &nep, nil
}

// SetConference moves association id to conference conf. It runs in two
// published steps with a grace period after each: the endpoint first leaves
// its conference (its claims closed there; its packets are dropped by
// Admit meanwhile), then joins conf. What its Send key was sent under each
// SSRC in the old conference is carried to conf, so that claims there
// continue above it (see doc.go); if another sender of conf has a live
// claim on one of those SSRCs, SetConference returns ErrSSRCConflict and changes
// nothing (or, if that sender claimed it while the move was under way,
// removes the association and says so). When it returns nil, no worker
// forwards the old conference's packets to it or its packets to the old
// conference. It also returns ErrNotFound, ErrInvalid (a move already in
// progress, or a link association: its tag is its conference's; install
// another link instead) and ErrGraceTimeout (change published).
func (t *Table) SetConference(ctx context.Context, id uuid.UUID, conf ConferenceID) (*Endpoint, error) {
	t.mu.Lock()
	as, ok := t.byID[id]
	if !ok {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: move %v to conference %d: %w", id, conf, ErrNotFound)
	}
	if as.cur.link {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: move link %v to conference %d: %w: a link belongs to its conference", id, conf, ErrInvalid)
	}
	old := as.cs.Load()
	if old == nil {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: move %v to conference %d: %w: a move is in progress", id, conf, ErrInvalid)
	}
	if as.cur.conf == conf {
		t.mu.Unlock()
		return as.cur, nil
	}
	// What it was sent in old (so far: a pre-check).
	mb := member{a: as, gen: as.cur.gen, join: as.joinSeq}
	rcv := old.received(mb, true)
	if cs := t.confs[conf]; cs != nil && cs.conflicts(as, rcv) {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: move %v to conference %d: %w", id, conf, ErrSSRCConflict)
	}
	// Step 1: leave. The endpoint keeps its address (reserved, and so
	// that its packets resolve and are dropped by ClaimSSRC, not
	// misrouted) but is in no conference.
	x := newTxn(t.snap.Load())
	t.leaveLocked(x, as, true)
	as.away = old
	limbo := *as.cur
	limbo.conf, limbo.cs = conf, nil
	t.replaceLocked(x, &limbo)
	epoch := t.publish(x)
	t.mu.Unlock()
	graceErr := t.waitGrace(ctx, epoch)

	// Step 2: join, carrying what it was sent in old (complete now that
	// no batch that could forward old's packets to it is running).
	t.mu.Lock()
	if t.byID[id] != as || as.cs.Load() != nil || as.cur.conf != conf {
		t.mu.Unlock()
		return nil, fmt.Errorf("keytable: move %v to conference %d: %w: removed during the move", id, conf, ErrNotFound)
	}
	nep := *as.cur
	cs := t.joinPrepare(&nep)
	x = newTxn(t.snap.Load())
	rcv = old.received(mb, false)
	as.away = nil
	if !cs.reserve(as, mb.gen, rcv) {
		if cs.nmembers == 0 {
			delete(t.confs, conf)
		}
		t.removeLocked(x, as)
		epoch = t.publish(x)
		t.mu.Unlock()
		t.stats.removes.Add(1)
		if err := t.waitGrace(ctx, epoch); err != nil {
			return nil, fmt.Errorf("keytable: move %v to conference %d: %w: a sender claimed a conflicting SSRC during the move; the association was removed (%w)",
				id, conf, ErrSSRCConflict, err)
		}
		return nil, fmt.Errorf("keytable: move %v to conference %d: %w: a sender claimed a conflicting SSRC during the move; the association was removed",
			id, conf, ErrSSRCConflict)
	}
	// nep replaces limbo, then joins.
	nep.cs = nil
	t.replaceLocked(x, &nep)
	t.joinCommit(x, &nep)
	epoch = t.publish(x)
	t.mu.Unlock()
	if err := t.waitGrace(ctx, epoch); err != nil || graceErr != nil {
		return &nep, fmt.Errorf("keytable: move %v to conference %d: %w", id, conf, cmpErr(err, graceErr))
	}
	return &nep, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// ExpireIdle removes every association whose endpoint has not been touched
// (Endpoint.Touch) for longer than idle, as Remove does, in one published
// change, and returns their IDs so that the caller can send
// EndpointDisconnect for each. Link associations are never expired: a
// link carries media only while the peer's members send, and the link
// manager removes it when the peer goes. Like Remove it waits for the grace period;
// on ErrGraceTimeout the IDs are still returned (the removal is
// published).
func (t *Table) ExpireIdle(ctx context.Context, idle time.Duration) ([]uuid.UUID, error) {
	cutoff := t.cfg.Now().UnixNano() - idle.Nanoseconds()
	t.mu.Lock()
	var ids []uuid.UUID
	var x *txn
	for id, as := range t.byID {
		if as.cur.link || as.lastSeen.Load() >= cutoff {
			continue
		}
		if x == nil {
			x = newTxn(t.snap.Load())
		}
		ids = append(ids, id)
		t.removeLocked(x, as)
	}
	if x == nil {
		t.mu.Unlock()
		return nil, nil
	}
	epoch := t.publish(x)
	t.mu.Unlock()
	t.stats.expired.Add(uint64(len(ids)))
	if err := t.waitGrace(ctx, epoch); err != nil {
		return ids, fmt.Errorf("keytable: expire idle: %w", err)
	}
	return ids, nil
}
