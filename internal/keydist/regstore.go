package keydist

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mdfast/mdfast/internal/etcdclient"
)

// The registry's dynamic layer in etcd (issue 14): with a store, what the
// admin API and the join endpoint add and remove is written to
// <prefix>kd/registry/... in a transaction, and every replica (the writer
// included) builds its dynamic layer from a watch of that subtree, so an
// endpoint registered through one replica completes its handshake on any
// other. A tls-id is claimed in the same transaction
// (kd/registry/tlsid/<digest>, create-if-absent), so two replicas cannot
// register it in two conferences. The registry file, if any, stays a
// local read-only layer as without a store.

// regStore is what the Registry needs of its store.
type regStore interface {
	setConference(id string, allowLegacy bool) error
	addEndpoint(conf string, e Endpoint, allowLegacy, newConf, addEntry bool) error
	removeEndpoints(conf string, api, revokeFile []Endpoint) error
	removeConference(id string, api, revokeFile []Endpoint) error
	// catchUp returns once the layer holds every write the store had
	// when it was called (a ClientHello's tls-id registered through
	// another replica a moment ago).
	catchUp() error
}

// regMirror keeps a Registry's dynamic layer equal to the store's.
type regMirror struct {
	s   *Store
	reg *Registry

	mu      sync.Mutex
	kvs     map[string]regKV // key below kd/registry/ → parsed value
	applied int64            // store revision the layer reflects
	loaded  bool
	sig     chan struct{} // closed and replaced when applied moves
	flight  *syncFlight   // the catch-up read in progress, if any
	changed chan struct{} // wakes the notifier
}

// syncFlight is one catch-up read, shared by the misses that wait for it.
type syncFlight struct {
	started time.Time
	done    chan struct{}
	err     error
}

// regKV is one parsed registry value.
type regKV struct {
	createRev int64
	conf      *storedConference
	ep        *storedEndpoint
	revoked   bool
}

// AttachRegistry makes reg keep its dynamic layer (admin API, join
// endpoint) in the store: writes go to etcd, and a watch mirrors every
// replica's writes into reg. Its goroutine runs until s.Close; the first
// load happens as soon as etcd answers (Check fails until then).
func (s *Store) AttachRegistry(reg *Registry) {
	m := &regMirror{s: s, reg: reg, kvs: map[string]regKV{}, sig: make(chan struct{}), changed: make(chan struct{}, 1)}
	reg.mu.Lock()
	reg.store = m
	reg.mu.Unlock()
	s.mu.Lock()
	s.registry = m
	s.mu.Unlock()
	s.wg.Go(m.run)
	s.wg.Go(m.notifier)
}

func (m *regMirror) prefix() string { return m.s.key("kd/registry/") }

// run loads the subtree and follows it; a broken watch (compaction, etcd
// gone) loads it again.
func (m *regMirror) run() {
	for m.s.ctx.Err() == nil {
		rev, err := m.load()
		if err != nil {
			_ = m.s.fail(storeOpRegLoad, err)
			select {
			case <-m.s.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(m.s.ctx))
		for resp := range m.s.cl.Watch(wctx, m.prefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if err := resp.Err(); err != nil {
				_ = m.s.fail(storeOpWatch, err)
				break
			}
			m.mu.Lock()
			// Claims do not show in the layer: a response of claims only
			// (a removal's last step, in chunks) needs no rebuild.
			rebuild := false
			for _, ev := range resp.Events {
				k := strings.TrimPrefix(string(ev.Kv.Key), m.prefix())
				rebuild = rebuild || !strings.HasPrefix(k, "tlsid/")
				if ev.Type == clientv3.EventTypeDelete {
					delete(m.kvs, k)
					continue
				}
				if v, err := m.parse(k, ev.Kv.Value); err != nil {
					delete(m.kvs, k)
					_ = m.s.fail(storeOpRegLoad, err)
				} else {
					v.createRev = ev.Kv.CreateRevision
					m.kvs[k] = v
				}
			}
			if !rebuild {
				m.advanceLocked(resp.Header.Revision)
				m.mu.Unlock()
				continue
			}
			api, revoked := m.buildLocked()
			m.mu.Unlock()
			m.publish(resp.Header.Revision, api, revoked)
		}
		cancel()
	}
}

// load reads the whole subtree and publishes it; it returns its revision.
func (m *regMirror) load() (int64, error) {
	ctx, cancel := m.s.reqCtx()
	defer cancel()
	g, err := m.s.cl.Get(ctx, m.prefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	kvs := make(map[string]regKV, len(g.Kvs))
	for _, kv := range g.Kvs {
		k := strings.TrimPrefix(string(kv.Key), m.prefix())
		v, err := m.parse(k, kv.Value)
		if err != nil {
			_ = m.s.fail(storeOpRegLoad, err)
			continue
		}
		v.createRev = kv.CreateRevision
		kvs[k] = v
	}
	m.mu.Lock()
	m.kvs = kvs
	api, revoked := m.buildLocked()
	m.mu.Unlock()
	m.publish(g.Header.Revision, api, revoked)
	m.mu.Lock()
	m.loaded = true
	m.mu.Unlock()
	return g.Header.Revision, nil
}

// parse checks one value against its key (below kd/registry/).
func (m *regMirror) parse(k string, b []byte) (regKV, error) {
	parts := strings.Split(k, "/")
	if len(parts) >= 2 && parts[0] != "tlsid" && ValidateConferenceID(parts[1]) != nil {
		return regKV{}, fmt.Errorf("registry key %q: conference id: %w", k, ErrStoreValue)
	}
	switch {
	case len(parts) == 2 && parts[0] == "conf":
		c, err := parseStoredConference(parts[1], b)
		if err != nil {
			return regKV{}, err
		}
		return regKV{conf: &c}, nil
	case len(parts) == 3 && (parts[0] == "ep" || parts[0] == "revoked"):
		e, err := parseStoredEndpoint(parts[1], parts[2], b)
		if err != nil {
			return regKV{}, err
		}
		return regKV{ep: &e, revoked: parts[0] == "revoked"}, nil
	case len(parts) == 2 && parts[0] == "tlsid":
		if _, _, err := parseClaim(b); err != nil {
			return regKV{}, fmt.Errorf("tls-id claim %s: %w", parts[1], err)
		}
		return regKV{}, nil
	}
	return regKV{}, fmt.Errorf("registry key %q: %w", k, ErrStoreValue)
}

// buildLocked builds the registry's dynamic layer from the store's
// values. Called with m.mu.
func (m *regMirror) buildLocked() (map[string]*confLayer, map[entryKey]bool) {
	type item struct {
		rev int64
		e   storedEndpoint
	}
	api := map[string]*confLayer{}
	revoked := map[entryKey]bool{}
	var eps []item
	for _, v := range m.kvs {
		switch {
		case v.conf != nil:
			l := api[v.conf.Conference]
			if l == nil {
				l = &confLayer{}
				api[v.conf.Conference] = l
			}
			l.allowLegacy = v.conf.AllowLegacy
		case v.ep != nil && v.revoked:
			revoked[entryKey{conf: v.ep.Conference, tlsID: v.ep.TLSID, fp: v.ep.Fingerprint}] = true
		case v.ep != nil:
			eps = append(eps, item{v.createRev, *v.ep})
		}
	}
	// First registered, first kept (merge drops a later duplicate).
	slices.SortFunc(eps, func(a, b item) int { return cmp.Compare(a.rev, b.rev) })
	for _, it := range eps {
		l := api[it.e.Conference]
		if l == nil {
			l = &confLayer{}
			api[it.e.Conference] = l
		}
		l.endpoints = append(l.endpoints, Endpoint{TLSID: it.e.TLSID, Fingerprint: it.e.Fingerprint, KDTLSID: it.e.KDTLSID, Source: "api"})
	}
	return api, revoked
}

// publish swaps the registry's dynamic layer, wakes the writers waiting
// for rev, and has the notifier goroutine tell the registry's subscribers:
// the KD's revalidation may wait for an association's lock, held by a
// ClientHello that waits for this goroutine (catchUp).
func (m *regMirror) publish(rev int64, api map[string]*confLayer, revoked map[entryKey]bool) {
	m.reg.swapDynamic(api, revoked)
	m.mu.Lock()
	m.advanceLocked(rev)
	m.mu.Unlock()
	select {
	case m.changed <- struct{}{}:
	default: // a notification is pending: it will read the newest snapshot
	}
}

// advanceLocked records that the layer reflects rev and wakes the writers
// waiting for it. Called with m.mu.
func (m *regMirror) advanceLocked(rev int64) {
	if rev > m.applied {
		m.applied = rev
		close(m.sig)
		m.sig = make(chan struct{})
	}
}

// notifier tells the registry's subscribers of changes, coalesced: each
// reads the registry's current snapshot.
func (m *regMirror) notifier() {
	for {
		select {
		case <-m.s.ctx.Done():
			return
		case <-m.changed:
			notify(m.reg.subscribers())
		}
	}
}

// waitApplied waits until the layer reflects revision rev (a write of
// this replica), bounded by the store timeout.
func (m *regMirror) waitApplied(rev int64) error {
	deadline := time.NewTimer(m.s.timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		ok, sig := m.applied >= rev, m.sig
		m.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-sig:
		case <-deadline.C:
			return m.s.fail(storeOpRegistry, fmt.Errorf("written at revision %d but not seen by the watch yet", rev))
		case <-m.s.ctx.Done():
			return fmt.Errorf("%w: closed", ErrStoreUnavailable)
		}
	}
}

func (m *regMirror) catchUp() error {
	arrived := time.Now()
	for {
		m.mu.Lock()
		f := m.flight
		if f == nil {
			f = &syncFlight{started: time.Now(), done: make(chan struct{})}
			m.flight = f
			m.mu.Unlock()
			f.err = m.syncNow()
			m.mu.Lock()
			m.flight = nil
			m.mu.Unlock()
			close(f.done)
			return f.err
		}
		m.mu.Unlock()
		<-f.done
		if !f.started.Before(arrived) {
			return f.err
		}
		// That read began before this miss: it may not cover it.
	}
}

// syncNow reads the store's revision (a linearizable read) and waits until
// the watch has applied it.
func (m *regMirror) syncNow() error {
	if err := m.s.failFast(storeOpRegLoad); err != nil {
		return err
	}
	ctx, cancel := m.s.reqCtx()
	g, err := m.s.cl.Get(ctx, m.prefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return m.s.fail(storeOpRegLoad, err)
	}
	m.s.ok()
	return m.waitApplied(g.Header.Revision)
}

func (m *regMirror) isLoaded() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loaded
}

func (m *regMirror) confKey(id string) string { return m.prefix() + "conf/" + id }
func (m *regMirror) epKey(conf string, e *Endpoint) string {
	return m.prefix() + "ep/" + conf + "/" + entryID(e.TLSID, e.Fingerprint)
}
func (m *regMirror) revokedKey(conf string, e *Endpoint) string {
	return m.prefix() + "revoked/" + conf + "/" + entryID(e.TLSID, e.Fingerprint)
}
func (m *regMirror) claimKey(tlsID string) string { return m.prefix() + "tlsid/" + tlsIDClaim(tlsID) }

// A tls-id claim's value names the entry that holds it:
// "<conference>/<entry id>".
func claimValue(conf string, e *Endpoint) string { return conf + "/" + entryID(e.TLSID, e.Fingerprint) }

func parseClaim(b []byte) (conf, id string, err error) {
	conf, id, ok := strings.Cut(string(b), "/")
	if !ok || len(b) > 256 || ValidateConferenceID(conf) != nil || len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", "", ErrStoreValue
	}
	return conf, id, nil
}

// dropStaleClaim deletes tlsID's claim if the entry it names is gone (a
// conference removed through another replica while this entry was being
// added there), and reports whether it did.
func (m *regMirror) dropStaleClaim(tlsID string) (bool, error) {
	ctx, cancel := m.s.reqCtx()
	defer cancel()
	g, err := m.s.cl.Get(ctx, m.claimKey(tlsID))
	if err != nil {
		return false, m.s.fail(storeOpRegistry, err)
	}
	if len(g.Kvs) == 0 {
		return true, nil
	}
	conf, id, err := parseClaim(g.Kvs[0].Value)
	if err != nil {
		return false, m.s.fail(storeOpRegistry, fmt.Errorf("tls-id claim: %w", err))
	}
	ep := m.prefix() + "ep/" + conf + "/" + id
	resp, err := m.s.cl.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(m.claimKey(tlsID)), "=", g.Kvs[0].ModRevision),
			clientv3.Compare(clientv3.CreateRevision(ep), "=", 0)).
		Then(clientv3.OpDelete(m.claimKey(tlsID))).Commit()
	if err != nil {
		return false, m.s.fail(storeOpRegistry, err)
	}
	return resp.Succeeded, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings and bools: cannot fail
	}
	return string(b)
}

// commit runs a write transaction and waits until this replica's layer
// shows it. ok is false when cmps failed (nothing written).
func (m *regMirror) commit(cmps []clientv3.Cmp, ops []clientv3.Op) (bool, error) {
	ctx, cancel := m.s.reqCtx()
	resp, err := m.s.cl.Txn(ctx).If(cmps...).Then(ops...).Commit()
	cancel()
	if err != nil {
		return false, m.s.fail(storeOpRegistry, err)
	}
	if !resp.Succeeded {
		return false, nil
	}
	return true, m.waitApplied(resp.Header.Revision)
}

func (m *regMirror) setConference(id string, allowLegacy bool) error {
	_, err := m.commit(nil, []clientv3.Op{clientv3.OpPut(m.confKey(id), mustJSON(storedConference{Conference: id, AllowLegacy: allowLegacy}))})
	return err
}

func (m *regMirror) addEndpoint(conf string, e Endpoint, allowLegacy, newConf, addEntry bool) error {
	var cmps []clientv3.Cmp
	ops := []clientv3.Op{clientv3.OpDelete(m.revokedKey(conf, &e))}
	if newConf {
		ops = append(ops, clientv3.OpPut(m.confKey(conf), mustJSON(storedConference{Conference: conf, AllowLegacy: allowLegacy})))
	}
	if addEntry {
		if e.TLSID != "" {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(m.claimKey(e.TLSID)), "=", 0))
			ops = append(ops, clientv3.OpPut(m.claimKey(e.TLSID), claimValue(conf, &e)))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(m.epKey(conf, &e)), "=", 0))
		}
		ops = append(ops, clientv3.OpPut(m.epKey(conf, &e), mustJSON(storedEndpoint{Conference: conf, TLSID: e.TLSID, Fingerprint: e.Fingerprint, KDTLSID: e.KDTLSID})))
	}
	ok, err := m.commit(cmps, ops)
	if err == nil && !ok && addEntry && e.TLSID != "" {
		var dropped bool
		if dropped, err = m.dropStaleClaim(e.TLSID); err == nil && dropped {
			ok, err = m.commit(cmps, ops)
		}
	}
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("add endpoint to %q: registered through another replica: %w", conf, ErrDuplicate)
	}
	return nil
}

// Removals grow with what was registered (a conference of thousands of
// endpoints) and etcd refuses a transaction of more than its
// --max-txn-ops operations (default 128), so they are written in three
// steps, each in chunks (etcdclient.Chunks). The steps are ordered so that
// a crash or an error after any transaction leaves a state the registry
// already handles, and so that the other replicas' mirrors, which apply
// the watch a response (whole revisions) at a time, pass only through such
// states:
//
//  1. the file entries' revocations (revoked/<conf>/<id>) first: a prefix
//     of them is the removal of some of those entries, which the API also
//     does, and no later step can fail with a removed file entry still
//     admitted (retrying the call revokes the rest);
//  2. the API entries: ep/<conf>/<id> each, or for a whole conference the
//     ep/<conf>/ prefix (one operation whatever its size) and then
//     conf/<conf>; from here the endpoints match nothing;
//  3. their tls-id claims. A crash before this step leaves claims whose
//     entry is gone, which addEndpoint already drops (dropStaleClaim).
//     Each claim goes only if it still names the removed entry and that
//     entry does not exist (a nested transaction per claim): meanwhile the
//     same endpoint may have been registered again through another
//     replica, or a stale mirror may have listed an entry whose tls-id
//     moved to another conference since.

// revokeOps hides file entries (step 1).
func (m *regMirror) revokeOps(conf string, revokeFile []Endpoint) []clientv3.Op {
	ops := make([]clientv3.Op, 0, len(revokeFile))
	for i := range revokeFile {
		e := &revokeFile[i]
		ops = append(ops, clientv3.OpPut(m.revokedKey(conf, e), mustJSON(storedEndpoint{Conference: conf, TLSID: e.TLSID, Fingerprint: e.Fingerprint})))
	}
	return ops
}

// dropClaimOps deletes the tls-id claims of removed entries (step 3).
// etcd counts each nested transaction as one operation of its parent and
// checks its two comparisons against what the parent leaves of
// --max-txn-ops: a chunk of n needs a limit of n+2 (66 for
// etcdclient.TxnOps; a lower limit makes the chunks halve).
func (m *regMirror) dropClaimOps(conf string, api []Endpoint) []clientv3.Op {
	ops := make([]clientv3.Op, 0, len(api))
	for i := range api {
		e := &api[i]
		if e.TLSID == "" {
			continue
		}
		claim := m.claimKey(e.TLSID)
		ops = append(ops, clientv3.OpTxn(
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.Value(claim), "=", claimValue(conf, e)),
				clientv3.Compare(clientv3.CreateRevision(m.epKey(conf, e)), "=", 0),
			},
			[]clientv3.Op{clientv3.OpDelete(claim)}, nil))
	}
	return ops
}

// writeSteps commits steps in order, each in chunks, and waits until this
// replica's layer shows the last.
func (m *regMirror) writeSteps(steps ...[]clientv3.Op) error {
	var rev int64
	for _, ops := range steps {
		r, err := etcdclient.Chunks(ops, func(ops []clientv3.Op) (*clientv3.TxnResponse, error) {
			ctx, cancel := m.s.reqCtx()
			defer cancel()
			return m.s.cl.Txn(ctx).Then(ops...).Commit()
		})
		if err != nil {
			return m.s.fail(storeOpRegistry, err)
		}
		rev = max(rev, r)
	}
	return m.waitApplied(rev)
}

func (m *regMirror) removeEndpoints(conf string, api, revokeFile []Endpoint) error {
	eps := make([]clientv3.Op, 0, len(api))
	for i := range api {
		eps = append(eps, clientv3.OpDelete(m.epKey(conf, &api[i])))
	}
	return m.writeSteps(m.revokeOps(conf, revokeFile), eps, m.dropClaimOps(conf, api))
}

func (m *regMirror) removeConference(id string, api, revokeFile []Endpoint) error {
	return m.writeSteps(m.revokeOps(id, revokeFile),
		[]clientv3.Op{clientv3.OpDelete(m.prefix()+"ep/"+id+"/", clientv3.WithPrefix()), clientv3.OpDelete(m.confKey(id))},
		m.dropClaimOps(id, api))
}
