package directory

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mdfast/mdfast/internal/etcdclient"
	"github.com/mdfast/mdfast/internal/ratelog"
)

// Defaults of the zero fields of Config.
const (
	DefaultLease      = 10 * time.Second
	DefaultDebounce   = 200 * time.Millisecond
	DefaultBackoffMin = 200 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
	// MinLease is the shortest lease accepted: etcd refuses shorter TTLs
	// with its default election timeout.
	MinLease = 2 * time.Second
)

// Config configures a Directory.
type Config struct {
	// Client is the etcd client (etcdclient.New); the Directory does not
	// close it.
	Client *clientv3.Client
	// Key maps a path below the store's prefix to the full key
	// (etcdclient.Config.Key).
	Key func(path string) string
	// ID is this MD's md-id (CheckID); unique among the MDs of a store.
	ID string
	// Self is what this MD publishes about itself.
	Self Alive
	// Lease is the TTL of this MD's entries (DefaultLease, at least
	// MinLease, whole seconds): a dead MD's entries vanish within it.
	Lease time.Duration
	// Debounce is how long presence changes are gathered before they are
	// written, in one transaction (DefaultDebounce); in chunks of
	// etcdclient.TxnOps when there are more changes.
	Debounce time.Duration
	// BackoffMin and BackoffMax bound the delay between retries while
	// etcd fails (DefaultBackoffMin, DefaultBackoffMax).
	BackoffMin, BackoffMax time.Duration
	// Logger (slog.Default when nil).
	Logger *slog.Logger
}

// Peer is one alive MD as the directory sees it.
type Peer struct {
	ID    string
	Alive Alive
	// Conferences it hosts members of, with their profile kind.
	Conferences map[string]Kind
}

// View is the directory at one revision: every alive MD, this one
// included. A View is immutable once handed out.
type View struct {
	Peers map[string]Peer
	// Revision is the etcd revision the view reflects.
	Revision int64
}

// State is the directory's own health, for metrics and readiness.
type State struct {
	// Registered: this MD's alive entry is on a lease kept alive.
	Registered bool
	// LastError is the last etcd failure ("" when none since the last
	// success), LastErrorAt when it happened.
	LastError   string
	LastErrorAt time.Time
	// Registrations counts leases granted (more than one: the MD
	// re-registered after losing its lease).
	Registrations uint64
	// Publishes counts presence transactions written.
	Publishes uint64
	// BadEntries counts keys or values under md/ that did not parse.
	BadEntries uint64
	// Peers is the number of alive MDs in the view, this one included.
	Peers int
	// IDInUse: this MD's md-id is held by another live MD (an alive entry
	// on a lease, with other addresses or another certificate, see the
	// package doc); this one is not registered, writes nothing and
	// retries until that entry is gone; both stay set until this MD
	// registers. InUseBy is the other MD's entry (zero when it did not
	// parse).
	IDInUse bool
	InUseBy Alive
	// Refusals counts registrations refused because the md-id was in use.
	Refusals uint64
}

// Directory publishes this MD's presence and watches the others'. Its
// methods are safe for concurrent use; Run does the work.
type Directory struct {
	cfg Config
	log *ratelog.Logger

	mu      sync.Mutex
	desired map[string]Kind
	dirty   chan struct{}

	updates chan View
	view    atomic.Pointer[View]

	registered    atomic.Bool
	registrations atomic.Uint64
	publishes     atomic.Uint64
	badEntries    atomic.Uint64
	refusals      atomic.Uint64
	// inUseBy is the other MD's alive entry while the md-id is in use.
	inUseBy atomic.Pointer[Alive]
	// gone is signalled when the watch sees this md-id's alive entry
	// deleted: a refused registration retries at once.
	gone      chan struct{}
	errMu     sync.Mutex
	lastErr   string
	lastErrAt time.Time
}

// New checks cfg and returns a Directory; Run starts it.
func New(cfg Config) (*Directory, error) {
	if cfg.Client == nil || cfg.Key == nil {
		return nil, fmt.Errorf("%w: a client and a key function are required", ErrConfig)
	}
	if err := CheckID(cfg.ID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := cfg.Self.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Lease < MinLease || cfg.Lease%time.Second != 0 {
		return nil, fmt.Errorf("%w: lease %v: want whole seconds, at least %v", ErrConfig, cfg.Lease, MinLease)
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffMin)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Directory{
		cfg:     cfg,
		log:     ratelog.New(cfg.Logger, 10*time.Second, 3),
		desired: map[string]Kind{},
		dirty:   make(chan struct{}, 1),
		gone:    make(chan struct{}, 1),
		updates: make(chan View, 1),
	}
	d.view.Store(&View{Peers: map[string]Peer{}})
	return d, nil
}

// Host says that this MD has local members of conference, of profile
// kind; Unhost that it has none left. Both are cheap: the change is
// written after Config.Debounce, together with the others.
func (d *Directory) Host(conference string, kind Kind) error {
	if err := checkConference(conference); err != nil {
		return err
	}
	if kind != KindSingle && kind != KindDouble {
		return fmt.Errorf("%w: profile kind %d", ErrEntry, kind)
	}
	d.mu.Lock()
	old, ok := d.desired[conference]
	d.desired[conference] = kind
	d.mu.Unlock()
	if !ok || old != kind {
		d.markDirty()
	}
	return nil
}

// Unhost withdraws conference (see Host).
func (d *Directory) Unhost(conference string) {
	d.mu.Lock()
	_, ok := d.desired[conference]
	delete(d.desired, conference)
	d.mu.Unlock()
	if ok {
		d.markDirty()
	}
}

// Hosted returns the conferences this MD publishes (or will, after the
// debounce).
func (d *Directory) Hosted() map[string]Kind {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.desired)
}

func (d *Directory) markDirty() {
	select {
	case d.dirty <- struct{}{}:
	default:
	}
}

// Updates delivers the current View after each change; a reader that
// falls behind gets the newest one (views are whole, not deltas).
func (d *Directory) Updates() <-chan View { return d.updates }

// View returns the current view.
func (d *Directory) View() View { return *d.view.Load() }

// ID returns this MD's md-id.
func (d *Directory) ID() string { return d.cfg.ID }

// State returns the directory's health.
func (d *Directory) State() State {
	d.errMu.Lock()
	le, la := d.lastErr, d.lastErrAt
	d.errMu.Unlock()
	s := State{
		Registered: d.registered.Load(), LastError: le, LastErrorAt: la,
		Registrations: d.registrations.Load(), Publishes: d.publishes.Load(),
		BadEntries: d.badEntries.Load(), Peers: len(d.view.Load().Peers),
		Refusals: d.refusals.Load(),
	}
	if by := d.inUseBy.Load(); by != nil {
		s.IDInUse, s.InUseBy = true, *by
	}
	return s
}

func (d *Directory) setErr(what string, err error) {
	d.errMu.Lock()
	d.lastErr, d.lastErrAt = what+": "+err.Error(), time.Now()
	d.errMu.Unlock()
	d.log.Log(slog.LevelWarn, "directory-"+what, "directory: etcd request failed; retrying", "op", what, "err", err)
}

// refused records a registration refused because another live MD holds
// the md-id, and logs it (rate-limited: the retries are frequent).
func (d *Directory) refused(e *inUseError) {
	d.refusals.Add(1)
	d.inUseBy.Store(&e.by)
	d.errMu.Lock()
	d.lastErr, d.lastErrAt = "register: "+e.Error(), time.Now()
	d.errMu.Unlock()
	args := []any{"md_id", d.cfg.ID}
	if e.err == nil {
		args = append(args, "other_media", e.by.Media, "other_cascade", e.by.Cascade,
			"other_fingerprint", hex.EncodeToString(e.by.Fingerprint[:]), "other_started", e.by.Started)
	} else {
		args = append(args, "err", e.err)
	}
	d.log.Log(slog.LevelError, "directory-id-in-use",
		"directory: md-id in use by another live MD; not registering until its entry is gone (md-ids must be unique)", args...)
}

func (d *Directory) clearErr() {
	d.errMu.Lock()
	d.lastErr = ""
	d.errMu.Unlock()
}

// Run registers this MD, keeps its lease alive, publishes its presence and
// watches the others' until ctx ends; then it revokes its lease (its
// entries vanish at once) and returns nil.
func (d *Directory) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { d.watchLoop(ctx) })
	d.presenceLoop(ctx)
	wg.Wait()
	return nil
}

// opTimeout bounds one etcd request.
func (d *Directory) opTimeout() time.Duration { return min(d.cfg.Lease/2, 5*time.Second) }

// sleep waits *backoff (doubled for next time, up to BackoffMax), or
// until wake (nil: never); false when ctx ended.
func (d *Directory) sleep(ctx context.Context, backoff *time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	*backoff = min(2**backoff, d.cfg.BackoffMax)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-wake:
		return true
	}
}

// presenceLoop owns the lease and the published entries.
func (d *Directory) presenceLoop(ctx context.Context) {
	backoff := d.cfg.BackoffMin
	var lease clientv3.LeaseID
	defer func() {
		d.registered.Store(false)
		if lease != 0 {
			rctx, cancel := context.WithTimeout(context.Background(), d.opTimeout())
			_, _ = d.cfg.Client.Revoke(rctx, lease) // best effort: else it expires
			cancel()
		}
	}()
	for ctx.Err() == nil {
		id, published, err := d.register(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var inUse *inUseError
			switch {
			case errors.As(err, &inUse):
				// Another live MD's entry: wait for it to go (the watch
				// wakes us when it is deleted) and look again.
				d.refused(inUse)
				if !d.sleep(ctx, &backoff, d.gone) {
					return
				}
			case errors.Is(err, errClaimLost):
				// Another MD of this md-id wrote its entry between our read
				// and our claim; the next read sees it.
				if !d.sleep(ctx, &backoff, nil) {
					return
				}
			default:
				d.setErr("register", err)
				if !d.sleep(ctx, &backoff, nil) {
					return
				}
			}
			continue
		}
		lease = id
		d.inUseBy.Store(nil)
		d.clearErr()
		backoff = d.cfg.BackoffMin
		d.registered.Store(true)
		d.registrations.Add(1)
		kctx, cancelKA := context.WithCancel(ctx)
		ka, err := d.cfg.Client.KeepAlive(kctx, id)
		if err != nil {
			cancelKA()
			d.registered.Store(false)
			d.setErr("keepalive", err)
			continue
		}
		d.serve(ctx, id, ka, published)
		cancelKA()
		d.registered.Store(false)
	}
}

// serve keeps one lease: it writes presence changes (debounced) until the
// lease is lost or ctx ends.
func (d *Directory) serve(ctx context.Context, lease clientv3.LeaseID, ka <-chan *clientv3.LeaseKeepAliveResponse, published map[string]Kind) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed := false
	retry := d.cfg.BackoffMin
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ka:
			if !ok {
				d.setErr("keepalive", errors.New("lease lost (etcd unreachable for longer than the lease, or the lease expired)"))
				return
			}
		case <-d.dirty:
			if !armed {
				timer.Reset(d.cfg.Debounce)
				armed = true
			}
		case <-timer.C:
			armed = false
			if err := d.publish(ctx, lease, published); err != nil {
				if ctx.Err() != nil {
					return
				}
				d.setErr("publish", err)
				timer.Reset(retry)
				armed = true
				retry = min(2*retry, d.cfg.BackoffMax)
				continue
			}
			retry = d.cfg.BackoffMin
			d.clearErr()
		}
	}
}

// errClaimLost: the alive entry changed between register's read and its
// claim (another MD of this md-id registered at the same moment).
var errClaimLost = errors.New("this md-id's alive entry changed while registering")

// inUseError: the md-id's alive entry belongs to another live MD.
type inUseError struct {
	by  Alive
	err error // the entry did not parse
}

func (e *inUseError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("md-id in use: its alive entry is on a lease and does not parse: %v", e.err)
	}
	return fmt.Sprintf("md-id in use by another live MD (media %v, cascade %v, started %v)",
		e.by.Media, e.by.Cascade, e.by.Started.UTC().Format(time.RFC3339))
}

// register grants a lease and writes the alive entry and every hosting
// entry on it. It first reads the md-id's alive entry: an entry on a lease
// that is not an earlier incarnation of this MD (Alive.supersededBy: same
// addresses and certificate, started no later) belongs to another live
// MD, and register writes nothing (an inUseError). An earlier
// incarnation's entry (a restart within the lease) is taken over and its
// lease revoked, so that its stale hosting entries go too. The alive
// entry is claimed by a transaction that compares it with what was read,
// so of two MDs registering at once exactly one succeeds (the other gets
// errClaimLost and, reading again, an inUseError).
func (d *Directory) register(ctx context.Context) (clientv3.LeaseID, map[string]Kind, error) {
	alive, err := d.cfg.Self.Marshal()
	if err != nil {
		return 0, nil, err
	}
	octx, cancel := context.WithTimeout(ctx, d.opTimeout())
	defer cancel()
	cl := d.cfg.Client
	key := d.cfg.Key(aliveKey(d.cfg.ID))
	old, err := cl.Get(octx, key)
	if err != nil {
		return 0, nil, fmt.Errorf("read own alive entry: %w", err)
	}
	claim := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	var oldLease clientv3.LeaseID
	if len(old.Kvs) == 1 {
		kv := old.Kvs[0]
		claim = clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
		if kv.Lease == 0 {
			// No MD writes without a lease: written by hand, and replaced.
			d.cfg.Logger.Warn("directory: replacing an alive entry of this md-id that is on no lease", "md_id", d.cfg.ID)
		} else {
			prev, perr := ParseAlive(kv.Value)
			if perr != nil || !prev.supersededBy(d.cfg.Self) {
				return 0, nil, &inUseError{by: prev, err: perr}
			}
			oldLease = clientv3.LeaseID(kv.Lease)
		}
	}
	g, err := cl.Grant(octx, int64(d.cfg.Lease/time.Second))
	if err != nil {
		return 0, nil, fmt.Errorf("grant lease: %w", err)
	}
	d.mu.Lock()
	hosted := maps.Clone(d.desired)
	d.mu.Unlock()
	// The alive entry goes first, in the transaction that claims it: a
	// hosting key (md/conf/<conference>/<md-id>) may be another live MD's
	// until this one holds the md-id. The hosting entries go with it when
	// they fit in one transaction (the other MDs, who list an MD by its
	// alive entry, see it appear with all its conferences); beyond, in
	// further chunks, each written only while the alive entry is still on
	// this lease. On a failure the lease is revoked, and whatever was
	// written goes with it.
	ops := make([]clientv3.Op, 0, len(hosted)+1)
	ops = append(ops, clientv3.OpPut(key, string(alive), clientv3.WithLease(g.ID)))
	for conf, kind := range hosted {
		v, _ := marshalKind(kind) // Host checked kind
		ops = append(ops, clientv3.OpPut(d.cfg.Key(hostingKey(conf, d.cfg.ID)), string(v), clientv3.WithLease(g.ID)))
	}
	claimed := false
	_, err = etcdclient.Chunks(ops, func(ops []clientv3.Op) (*clientv3.TxnResponse, error) {
		cmp := claim
		if claimed {
			cmp = clientv3.Compare(clientv3.LeaseValue(key), "=", g.ID)
		}
		tctx, cancel := context.WithTimeout(ctx, d.opTimeout())
		defer cancel()
		resp, err := cl.Txn(tctx).If(cmp).Then(ops...).Commit()
		if err != nil {
			return nil, err
		}
		if !resp.Succeeded {
			return nil, errClaimLost
		}
		claimed = true
		return resp, nil
	})
	if err != nil {
		_, _ = cl.Revoke(octx, g.ID)
		return 0, nil, fmt.Errorf("write alive and hosting entries: %w", err)
	}
	if oldLease != 0 {
		d.cfg.Logger.Info("directory: took over the entries of an earlier incarnation of this MD (a restart within the lease)", "md_id", d.cfg.ID)
		if _, err := cl.Revoke(octx, oldLease); err != nil {
			d.cfg.Logger.Debug("directory: revoke the earlier lease", "err", err) // it expires anyway
		}
	}
	d.cfg.Logger.Info("directory: registered", "md_id", d.cfg.ID, "lease", d.cfg.Lease, "conferences", len(hosted))
	return g.ID, hosted, nil
}

// publish writes the difference between what is hosted and what was
// published, in one transaction (chunks when larger), and updates
// published.
func (d *Directory) publish(ctx context.Context, lease clientv3.LeaseID, published map[string]Kind) error {
	d.mu.Lock()
	want := maps.Clone(d.desired)
	d.mu.Unlock()
	var ops []clientv3.Op
	for conf, kind := range want {
		if k, ok := published[conf]; ok && k == kind {
			continue
		}
		v, _ := marshalKind(kind)
		ops = append(ops, clientv3.OpPut(d.cfg.Key(hostingKey(conf, d.cfg.ID)), string(v), clientv3.WithLease(lease)))
	}
	for conf := range published {
		if _, ok := want[conf]; !ok {
			ops = append(ops, clientv3.OpDelete(d.cfg.Key(hostingKey(conf, d.cfg.ID))))
		}
	}
	if len(ops) == 0 {
		return nil
	}
	// More changes than one transaction takes go in chunks; after a
	// failure, published is unchanged and the retry writes the whole
	// difference again (puts and deletes that are already done are
	// harmless).
	if _, err := etcdclient.Chunks(ops, d.txn(ctx)); err != nil {
		return fmt.Errorf("write %d hosting changes: %w", len(ops), err)
	}
	d.publishes.Add(1)
	clear(published)
	maps.Copy(published, want)
	return nil
}

// txn returns etcdclient.Chunks' commit function: one transaction, with
// its own timeout.
func (d *Directory) txn(ctx context.Context) func([]clientv3.Op) (*clientv3.TxnResponse, error) {
	return func(ops []clientv3.Op) (*clientv3.TxnResponse, error) {
		octx, cancel := context.WithTimeout(ctx, d.opTimeout())
		defer cancel()
		return d.cfg.Client.Txn(octx).Then(ops...).Commit()
	}
}

// dirState is the watch loop's copy of md/.
type dirState struct {
	alive   map[string]Alive
	hosting map[string]map[string]Kind
}

// watchLoop reads md/ and follows it; on any failure it keeps the last
// view and starts over with back-off.
func (d *Directory) watchLoop(ctx context.Context) {
	backoff := d.cfg.BackoffMin
	prefix := d.cfg.Key(mdDir)
	for ctx.Err() == nil {
		octx, cancel := context.WithTimeout(ctx, d.opTimeout())
		resp, err := d.cfg.Client.Get(octx, prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.setErr("read", err)
			if !d.sleep(ctx, &backoff, nil) {
				return
			}
			continue
		}
		st := dirState{alive: map[string]Alive{}, hosting: map[string]map[string]Kind{}}
		for _, kv := range resp.Kvs {
			d.apply(&st, string(kv.Key[len(prefix)-len(mdDir):]), kv.Value, false)
		}
		rev := resp.Header.Revision
		d.emit(&st, rev)
		wctx, cancelW := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := d.cfg.Client.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for wr := range wch {
			if err := wr.Err(); err != nil {
				d.setErr("watch", err)
				break
			}
			for _, ev := range wr.Events {
				d.apply(&st, string(ev.Kv.Key[len(prefix)-len(mdDir):]), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
			}
			if len(wr.Events) > 0 {
				backoff = d.cfg.BackoffMin
				d.emit(&st, wr.Header.Revision)
			}
		}
		cancelW()
		if ctx.Err() == nil && !d.sleep(ctx, &backoff, nil) {
			return
		}
	}
}

// apply applies one key (path below the prefix) to st; a key or value
// that does not parse is counted, logged rate-limited and ignored (a put
// that does not parse removes the entry it replaces).
func (d *Directory) apply(st *dirState, path string, value []byte, deleted bool) {
	kind, id, conf, err := parseKey(path)
	if err != nil {
		d.bad(err)
		return
	}
	switch kind {
	case entryAlive:
		delete(st.alive, id)
		if deleted {
			if id == d.cfg.ID {
				select {
				case d.gone <- struct{}{}:
				default:
				}
			}
			return
		}
		a, err := ParseAlive(value)
		if err != nil {
			d.bad(err)
			return
		}
		st.alive[id] = a
	case entryHosting:
		h := st.hosting[id]
		if h != nil {
			delete(h, conf)
			if len(h) == 0 {
				delete(st.hosting, id)
			}
		}
		if deleted {
			return
		}
		k, err := ParseHosting(value)
		if err != nil {
			d.bad(err)
			return
		}
		if st.hosting[id] == nil {
			st.hosting[id] = map[string]Kind{}
		}
		st.hosting[id][conf] = k
	}
}

func (d *Directory) bad(err error) {
	d.badEntries.Add(1)
	d.log.Log(slog.LevelWarn, "directory-entry", "directory: ignored an entry under md/ that does not parse", "err", err)
}

// emit publishes the view of st.
func (d *Directory) emit(st *dirState, rev int64) {
	v := View{Peers: make(map[string]Peer, len(st.alive)), Revision: rev}
	for id, a := range st.alive {
		v.Peers[id] = Peer{ID: id, Alive: a, Conferences: maps.Clone(st.hosting[id])}
		if v.Peers[id].Conferences == nil {
			p := v.Peers[id]
			p.Conferences = map[string]Kind{}
			v.Peers[id] = p
		}
	}
	d.view.Store(&v)
	select {
	case <-d.updates:
	default:
	}
	select {
	case d.updates <- v:
	default:
	}
}
