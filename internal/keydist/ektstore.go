package keydist

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"github.com/google/uuid"
	"net/url"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mdfast/mdfast/internal/dtls"
)

// EtcdEKT is the EKTSource of Key Distributor replicas: each conference's
// parameter set lives in etcd, sealed (storecodec.go), so that every
// replica hands the members of a conference the same set.
//
//   - Current creates a conference's set only if absent, in one
//     transaction that also records this replica's membership of the
//     conference (kd/ekt/members/<conference>/<replica>, on the lease): two
//     replicas racing for a new conference end with one set.
//   - Rekey is a compare-and-swap on the set's mod revision: it replaces
//     the set it read only if nobody replaced it since.
//   - Forget (the replica's last member of the conference left) removes
//     the membership; the set is deleted if no replica is a member any
//     more, else re-keyed (whoever left knew the key).
//   - The replica whose compare-and-swap replaced a set (exactly one per
//     re-key) tells its KeyDistributor, which ends the conference's
//     orphans (associations of vanished replicas, assocstore.go) at their
//     MDs: they cannot get the new set.
//   - A watch on the sets tells the KeyDistributor when another replica
//     changed the set of a conference it has members of; it sends them the
//     new EKTKey exactly as after its own re-key.
//
// The sets of conferences with local members are cached (kept current by
// the watch): joining such a conference needs no etcd request, so joins
// go on while etcd is unreachable; only a new set (a new conference, a
// re-key) needs it.
type EtcdEKT struct {
	s      *Store
	cipher dtls.EKTCipher
	ttl    time.Duration
	max    int

	mu      sync.Mutex
	confs   map[string]*cachedSet
	forgets map[string]forgetJob // Forgets not yet done in etcd
	joining map[string]int64     // conferences being joined: the newest revision a watch event showed
	stale   map[string]bool      // cached sets to read again (changed while being joined)
	notify  func(conference string)
	rekeyed func(conference string) // told after this replica's re-key replaced a set
	kick    chan struct{}
}

// cachedSet is a conference's current set as this replica knows it.
type cachedSet struct {
	p         *EKTParams // p.rev is the set's mod revision
	memberRev int64      // mod revision of this replica's membership key
}

// forgetJob is a Forget to do in etcd: the membership key to delete (if
// still at memberRev) and the SPI whoever left knew.
type forgetJob struct {
	memberRev int64
	spi       uint16
}

// NewEtcdEKT returns the EKT source on s; its watch and retry goroutine
// run until s.Close. Zero values of c mean the defaults.
func NewEtcdEKT(s *Store, c MemoryEKTConfig) (*EtcdEKT, error) {
	m, err := NewMemoryEKT(c) // the same checks and defaults
	if err != nil {
		return nil, err
	}
	e := &EtcdEKT{s: s, cipher: m.cipher, ttl: m.ttl, max: m.max, confs: map[string]*cachedSet{},
		forgets: map[string]forgetJob{}, joining: map[string]int64{}, stale: map[string]bool{}, kick: make(chan struct{}, 1)}
	s.subscribeLease(e.relogin)
	s.wg.Go(e.watchLoop)
	s.wg.Go(e.upkeepLoop)
	return e, nil
}

// setNotify implements ektNotifier.
func (e *EtcdEKT) setNotify(f func(conference string)) {
	e.mu.Lock()
	e.notify = f
	e.mu.Unlock()
}

// setRekeyed implements orphanSource.
func (e *EtcdEKT) setRekeyed(f func(conference string)) {
	e.mu.Lock()
	e.rekeyed = f
	e.mu.Unlock()
}

// orphansOf implements orphanSource.
func (e *EtcdEKT) orphansOf(conference string) []orphan { return e.s.orphansOf(conference) }

// forgetOrphan implements orphanSource.
func (e *EtcdEKT) forgetOrphan(o orphan) { e.s.forgetOrphan(o) }

// isOrphan implements orphanSource.
func (e *EtcdEKT) isOrphan(o orphan) bool { return e.s.isOrphan(o) }

// orphanByID implements orphanSource.
func (e *EtcdEKT) orphanByID(md string, id uuid.UUID) (orphan, bool) { return e.s.orphanByID(md, id) }

// Cipher implements EKTSource.
func (e *EtcdEKT) Cipher() dtls.EKTCipher { return e.cipher }

func (e *EtcdEKT) setKey(conference string) string {
	return e.s.key("kd/ekt/set/" + url.PathEscape(conference))
}

func (e *EtcdEKT) membersPrefix(conference string) string {
	return e.s.key("kd/ekt/members/" + url.PathEscape(conference) + "/")
}

func (e *EtcdEKT) memberKey(conference string) string {
	return e.membersPrefix(conference) + e.s.replica
}

// open opens a set read from the store at mod revision rev.
func (e *EtcdEKT) open(conference string, value []byte, rev int64) (*EKTParams, error) {
	if len(value) > maxStoreValue {
		return nil, fmt.Errorf("sealed EKT set of %d octets: %w", len(value), ErrStoreValue)
	}
	p, err := openParams(e.s.aead, e.s.prefix, conference, e.cipher, value)
	if err != nil {
		return nil, err
	}
	p.rev = rev
	return &p, nil
}

// cache records p as conference's set unless a newer one is cached, and
// returns the cached one's copy. p is the cache's (or zeroed) afterwards.
func (e *EtcdEKT) cache(conference string, p *EKTParams, memberRev int64) EKTParams {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.confs[conference]
	switch {
	case c == nil:
		c = &cachedSet{p: p}
		e.confs[conference] = c
	case p.rev > c.p.rev:
		c.p.zero()
		c.p = p
	default:
		p.zero()
	}
	if memberRev > c.memberRev {
		c.memberRev = memberRev
	}
	// A Forget still pending for the conference stays: its membership
	// delete no longer matches, and it re-keys what whoever left knew.
	return c.p.clone()
}

// Current implements EKTSource.
func (e *EtcdEKT) Current(conference string) (EKTParams, error) {
	e.mu.Lock()
	if c := e.confs[conference]; c != nil {
		defer e.mu.Unlock()
		return c.p.clone(), nil
	}
	full := len(e.confs) >= e.max
	if !full {
		e.joining[conference] = 0
	}
	e.mu.Unlock()
	if full {
		return EKTParams{}, ErrTooManyConferences
	}
	p, memberRev, err := e.join(conference)
	e.mu.Lock()
	seen := e.joining[conference]
	delete(e.joining, conference)
	if err == nil && seen > p.rev {
		// Changed between the transaction and now: read it again (not
		// here: the caller holds the conference's lock the notification
		// takes).
		e.stale[conference] = true
		e.kickLocked()
	}
	e.mu.Unlock()
	if err != nil {
		return EKTParams{}, err
	}
	return e.cache(conference, p, memberRev), nil
}

func (e *EtcdEKT) kickLocked() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// join records this replica's membership of conference and returns its
// set, created if absent, in one transaction.
func (e *EtcdEKT) join(conference string) (*EKTParams, int64, error) {
	lease, err := e.s.currentLease()
	if err != nil {
		e.s.errs.WithLabelValues(storeOpEKTGet).Inc()
		return nil, 0, err
	}
	if err := e.s.failFast(storeOpEKTGet); err != nil {
		return nil, 0, err
	}
	fresh, err := (&MemoryEKT{cipher: e.cipher, ttl: e.ttl}).newParams(nil)
	if err != nil {
		return nil, 0, err
	}
	sealed, err := sealParams(e.s.aead, e.s.prefix, conference, fresh)
	if err != nil {
		fresh.zero()
		return nil, 0, err
	}
	key, member := e.setKey(conference), e.memberKey(conference)
	ctx, cancel := e.s.reqCtx()
	defer cancel()
	resp, err := e.s.cl.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(sealed)), clientv3.OpPut(member, "", clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key), clientv3.OpPut(member, "", clientv3.WithLease(lease))).
		Commit()
	if err != nil {
		fresh.zero()
		return nil, 0, e.s.fail(storeOpEKTGet, err)
	}
	e.s.ok()
	if resp.Succeeded {
		fresh.rev = resp.Header.Revision
		return fresh, resp.Header.Revision, nil
	}
	fresh.zero()
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 {
		return nil, 0, e.s.fail(storeOpEKTGet, fmt.Errorf("set of conference %q vanished inside a transaction", conference))
	}
	p, err := e.open(conference, kvs[0].Value, kvs[0].ModRevision)
	if err != nil {
		return nil, 0, e.s.fail(storeOpEKTGet, err)
	}
	return p, resp.Header.Revision, nil
}

// Rekey implements EKTSource.
func (e *EtcdEKT) Rekey(conference string, spi uint16) (EKTParams, error) {
	p, err := e.rekey(conference, spi)
	if err != nil {
		return EKTParams{}, err
	}
	e.mu.Lock()
	_, cached := e.confs[conference]
	e.mu.Unlock()
	if !cached {
		defer p.zero()
		return p.clone(), nil
	}
	return e.cache(conference, p, 0), nil
}

// rekey replaces conference's set if its SPI is still spi
// (compare-and-swap on its mod revision) and returns the current set.
func (e *EtcdEKT) rekey(conference string, spi uint16) (*EKTParams, error) {
	if err := e.s.failFast(storeOpEKTRekey); err != nil {
		return nil, err
	}
	key := e.setKey(conference)
	ctx, cancel := e.s.reqCtx()
	defer cancel()
	g, err := e.s.cl.Get(ctx, key)
	if err != nil {
		return nil, e.s.fail(storeOpEKTRekey, err)
	}
	e.s.ok()
	if len(g.Kvs) == 0 {
		return nil, fmt.Errorf("keydist: re-key conference %q: %w", conference, ErrNotFound)
	}
	old, err := e.open(conference, g.Kvs[0].Value, g.Kvs[0].ModRevision)
	if err != nil {
		return nil, e.s.fail(storeOpEKTRekey, err)
	}
	if old.SPI != spi {
		return old, nil
	}
	next, err := (&MemoryEKT{cipher: e.cipher, ttl: e.ttl}).newParams(old)
	old.zero()
	if err != nil {
		return nil, err
	}
	sealed, err := sealParams(e.s.aead, e.s.prefix, conference, next)
	if err != nil {
		next.zero()
		return nil, err
	}
	resp, err := e.s.cl.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", g.Kvs[0].ModRevision)).
		Then(clientv3.OpPut(key, string(sealed))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		next.zero()
		return nil, e.s.fail(storeOpEKTRekey, err)
	}
	if resp.Succeeded {
		// This replica's compare-and-swap replaced the set: of all
		// replicas, it alone ends the conference's orphans.
		next.rev = resp.Header.Revision
		e.mu.Lock()
		f := e.rekeyed
		e.mu.Unlock()
		if f != nil {
			f(conference)
		}
		return next, nil
	}
	next.zero()
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 {
		return nil, fmt.Errorf("keydist: re-key conference %q: deleted meanwhile: %w", conference, ErrNotFound)
	}
	cur, err := e.open(conference, kvs[0].Value, kvs[0].ModRevision)
	if err != nil {
		return nil, e.s.fail(storeOpEKTRekey, err)
	}
	return cur, nil
}

// Forget implements EKTSource: this replica has no member of conference
// any more. The cached set is zeroed now; the store is updated by the
// retry goroutine (at once if etcd answers).
func (e *EtcdEKT) Forget(conference string) {
	e.mu.Lock()
	c := e.confs[conference]
	if c == nil {
		e.mu.Unlock()
		return
	}
	delete(e.confs, conference)
	e.forgets[conference] = forgetJob{memberRev: c.memberRev, spi: c.p.SPI}
	c.p.zero()
	e.kickLocked()
	e.mu.Unlock()
}

// zeroAll zeroes and drops every cached set (the store is closing).
func (e *EtcdEKT) zeroAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for c, s := range e.confs {
		s.p.zero()
		delete(e.confs, c)
	}
}

// Conferences returns how many conferences this replica holds a set of.
func (e *EtcdEKT) Conferences() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.confs)
}

// upkeepLoop does the Forgets in etcd, retrying every second while etcd
// is unreachable, and re-reads the sets marked stale.
func (e *EtcdEKT) upkeepLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	defer e.zeroAll()
	for {
		select {
		case <-e.s.ctx.Done():
			return
		case <-e.kick:
		case <-t.C:
		}
		e.mu.Lock()
		jobs := make(map[string]forgetJob, len(e.forgets))
		for c, j := range e.forgets {
			jobs[c] = j
		}
		stale := make([]string, 0, len(e.stale))
		for c := range e.stale {
			stale = append(stale, c)
		}
		clear(e.stale)
		e.mu.Unlock()
		for _, c := range stale {
			e.refresh(c)
		}
		for c, j := range jobs {
			if err := e.forget(c, j); err != nil {
				continue
			}
			e.mu.Lock()
			if cur, ok := e.forgets[c]; ok && cur == j {
				delete(e.forgets, c)
			}
			e.mu.Unlock()
		}
	}
}

// forget removes this replica's membership of conference (unless it
// joined again since), then deletes the set if no replica is a member,
// else re-keys it if its SPI is still the one whoever left knew.
func (e *EtcdEKT) forget(conference string, j forgetJob) error {
	key, member, members := e.setKey(conference), e.memberKey(conference), e.membersPrefix(conference)
	ctx, cancel := e.s.reqCtx()
	defer cancel()
	if j.memberRev != 0 {
		if _, err := e.s.cl.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(member), "=", j.memberRev)).
			Then(clientv3.OpDelete(member)).Commit(); err != nil {
			return e.s.fail(storeOpForget, err)
		}
	}
	resp, err := e.s.cl.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(members), "=", 0).WithPrefix()).
		Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return e.s.fail(storeOpForget, err)
	}
	if resp.Succeeded {
		return nil
	}
	p, err := e.rekey(conference, j.spi)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	p.zero()
	return nil
}

// relogin runs after a new lease: the memberships on the lost one are
// gone, so every cached conference joins again (and learns whether its set
// changed or vanished meanwhile).
func (e *EtcdEKT) relogin() {
	e.mu.Lock()
	confs := make([]string, 0, len(e.confs))
	for c := range e.confs {
		confs = append(confs, c)
	}
	e.mu.Unlock()
	for _, c := range confs {
		e.refresh(c)
	}
}

// refresh re-reads conference's set (and re-records the membership) and
// tells the KeyDistributor if it changed; a set that vanished is dropped
// from the cache, and the KeyDistributor's Current then makes a new one.
func (e *EtcdEKT) refresh(conference string) {
	e.mu.Lock()
	_, cached := e.confs[conference]
	e.mu.Unlock()
	if !cached {
		return
	}
	lease, err := e.s.currentLease()
	if err != nil {
		return
	}
	key, member := e.setKey(conference), e.memberKey(conference)
	ctx, cancel := e.s.reqCtx()
	resp, err := e.s.cl.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
		Then(clientv3.OpGet(key), clientv3.OpPut(member, "", clientv3.WithLease(lease))).
		Commit()
	cancel()
	if err != nil {
		_ = e.s.fail(storeOpEKTGet, err)
		return
	}
	if !resp.Succeeded {
		e.dropAndNotify(conference)
		return
	}
	kv := resp.Responses[0].GetResponseRange().Kvs[0]
	p, err := e.open(conference, kv.Value, kv.ModRevision)
	if err != nil {
		_ = e.s.fail(storeOpEKTGet, err)
		return
	}
	e.applyRemote(conference, p, resp.Header.Revision)
}

// applyRemote takes a set read from the store (another replica's re-key)
// and tells the KeyDistributor when it is newer than the cached one.
func (e *EtcdEKT) applyRemote(conference string, p *EKTParams, memberRev int64) {
	e.mu.Lock()
	c := e.confs[conference]
	if c != nil && p.rev > c.p.rev && !spiAfter(p.SPI, c.p.SPI) && !p.sameSet(c.p) {
		// Every re-key makes the stored set's SPI plus one (newParams):
		// a newer write with an SPI not after the one held is an older
		// set put back (a restored backup, a replayed value), which a
		// member who has left may know. Keep the held set; the next
		// re-key replaces both.
		held := c.p.SPI
		e.mu.Unlock()
		_ = e.s.fail(storeOpEKTGet, fmt.Errorf("conference %q: a set with SPI %d written over the held SPI %d (rolled back?): %w", conference, p.SPI, held, ErrStoreValue))
		p.zero()
		return
	}
	if c == nil || p.rev <= c.p.rev {
		if c != nil && memberRev > c.memberRev {
			c.memberRev = memberRev
		}
		e.mu.Unlock()
		p.zero()
		return
	}
	c.p.zero()
	c.p = p
	if memberRev > c.memberRev {
		c.memberRev = memberRev
	}
	f := e.notify
	e.mu.Unlock()
	if f != nil {
		f(conference)
	}
}

// dropAndNotify forgets a cached set that vanished from the store (its
// last member replica's Forget, after this replica's lease was lost) and
// tells the KeyDistributor, whose Current then joins again.
// spiAfter reports whether SPI a comes after b in serial-number order
// (RFC 1982 over 16 bits): re-keys count SPIs up and may wrap.
func spiAfter(a, b uint16) bool { return int16(a-b) > 0 }

// sameSet reports whether p and q are the same parameter set (a value
// written again unchanged).
func (p *EKTParams) sameSet(q *EKTParams) bool {
	return p.SPI == q.SPI && p.Cipher == q.Cipher && subtle.ConstantTimeCompare(p.Key, q.Key) == 1 &&
		subtle.ConstantTimeCompare(p.Salt, q.Salt) == 1
}

func (e *EtcdEKT) dropAndNotify(conference string) {
	e.mu.Lock()
	c := e.confs[conference]
	if c != nil {
		c.p.zero()
		delete(e.confs, conference)
	}
	f := e.notify
	e.mu.Unlock()
	if c != nil && f != nil {
		f(conference)
	}
}

// watchLoop follows the sets of every conference; it starts again (after
// re-reading the cached conferences) when the watch breaks.
func (e *EtcdEKT) watchLoop() {
	prefix := e.s.key("kd/ekt/set/")
	for e.s.ctx.Err() == nil {
		ctx, cancel := e.s.reqCtx()
		g, err := e.s.cl.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			_ = e.s.fail(storeOpWatch, err)
			select {
			case <-e.s.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		// Anything that changed before the watch starts is read again.
		e.relogin()
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(e.s.ctx))
		for resp := range e.s.cl.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(g.Header.Revision+1)) {
			if err := resp.Err(); err != nil {
				_ = e.s.fail(storeOpWatch, err)
				break
			}
			for _, ev := range resp.Events {
				e.event(strings.TrimPrefix(string(ev.Kv.Key), prefix), ev)
			}
		}
		wcancel()
	}
}

// event handles one change of a set.
func (e *EtcdEKT) event(escaped string, ev *clientv3.Event) {
	conference, err := url.PathUnescape(escaped)
	if err != nil {
		_ = e.s.fail(storeOpWatch, fmt.Errorf("set key %q: %w", escaped, ErrStoreValue))
		return
	}
	e.mu.Lock()
	c := e.confs[conference]
	var rev int64
	if c != nil {
		rev = c.p.rev
	} else if seen, ok := e.joining[conference]; ok && ev.Kv.ModRevision > seen {
		e.joining[conference] = ev.Kv.ModRevision
	}
	e.mu.Unlock()
	if c == nil || ev.Kv.ModRevision <= rev {
		return
	}
	if ev.Type == clientv3.EventTypeDelete {
		e.dropAndNotify(conference)
		return
	}
	p, err := e.open(conference, ev.Kv.Value, ev.Kv.ModRevision)
	if err != nil {
		_ = e.s.fail(storeOpWatch, err)
		return
	}
	e.applyRemote(conference, p, 0)
}

// ektNotifier is implemented by EKT sources whose sets can change under
// the KeyDistributor (another replica's re-key): f is told the conference.
type ektNotifier interface {
	setNotify(f func(conference string))
}

// orphanSource is implemented by EKT sources shared by KD replicas that
// know the associations of vanished replicas (EtcdEKT): after a re-key
// this replica made, the KeyDistributor ends the conference's orphans at
// their MDs and forgets them.
type orphanSource interface {
	setRekeyed(f func(conference string))
	orphansOf(conference string) []orphan
	forgetOrphan(o orphan)
	// isOrphan reports whether o is still an orphan (its replica has not
	// come back and re-published it meanwhile).
	isOrphan(o orphan) bool
	// orphanByID returns the orphan association id relayed by md.
	orphanByID(md string, id uuid.UUID) (orphan, bool)
}

var (
	_ EKTSource    = (*EtcdEKT)(nil)
	_ ektNotifier  = (*EtcdEKT)(nil)
	_ orphanSource = (*EtcdEKT)(nil)
)
