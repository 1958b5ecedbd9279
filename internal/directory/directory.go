package directory

import (
	"context"
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
	errMu         sync.Mutex
	lastErr       string
	lastErrAt     time.Time
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
	return State{
		Registered: d.registered.Load(), LastError: le, LastErrorAt: la,
		Registrations: d.registrations.Load(), Publishes: d.publishes.Load(),
		BadEntries: d.badEntries.Load(), Peers: len(d.view.Load().Peers),
	}
}

func (d *Directory) setErr(what string, err error) {
	d.errMu.Lock()
	d.lastErr, d.lastErrAt = what+": "+err.Error(), time.Now()
	d.errMu.Unlock()
	d.log.Log(slog.LevelWarn, "directory-"+what, "directory: etcd request failed; retrying", "op", what, "err", err)
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

func (d *Directory) sleep(ctx context.Context, backoff *time.Duration) bool {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	*backoff = min(2**backoff, d.cfg.BackoffMax)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
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
			d.setErr("register", err)
			if !d.sleep(ctx, &backoff) {
				return
			}
			continue
		}
		lease = id
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

// register grants a lease and writes the alive entry and every hosted
// conference on it. An entry of an earlier incarnation of this md-id (a
// restart within the lease, or etcd down longer than the lease) is taken
// over and its lease revoked, so that its stale hosting entries go too.
func (d *Directory) register(ctx context.Context) (clientv3.LeaseID, map[string]Kind, error) {
	alive, err := d.cfg.Self.Marshal()
	if err != nil {
		return 0, nil, err
	}
	octx, cancel := context.WithTimeout(ctx, d.opTimeout())
	defer cancel()
	cl := d.cfg.Client
	old, err := cl.Get(octx, d.cfg.Key(aliveKey(d.cfg.ID)))
	if err != nil {
		return 0, nil, fmt.Errorf("read own alive entry: %w", err)
	}
	g, err := cl.Grant(octx, int64(d.cfg.Lease/time.Second))
	if err != nil {
		return 0, nil, fmt.Errorf("grant lease: %w", err)
	}
	d.mu.Lock()
	hosted := maps.Clone(d.desired)
	d.mu.Unlock()
	// The hosting entries grow with the conferences hosted, beyond what
	// etcd takes in one transaction: they go first, in chunks, and the
	// alive entry last, so that the other MDs (who list an MD by its alive
	// entry) see this one appear with all its conferences. On a failure
	// the lease is revoked, and whatever was written goes with it.
	ops := make([]clientv3.Op, 0, len(hosted)+1)
	for conf, kind := range hosted {
		v, _ := marshalKind(kind) // Host checked kind
		ops = append(ops, clientv3.OpPut(d.cfg.Key(hostingKey(conf, d.cfg.ID)), string(v), clientv3.WithLease(g.ID)))
	}
	ops = append(ops, clientv3.OpPut(d.cfg.Key(aliveKey(d.cfg.ID)), string(alive), clientv3.WithLease(g.ID)))
	if _, err := etcdclient.Chunks(ops, d.txn(ctx)); err != nil {
		_, _ = cl.Revoke(octx, g.ID)
		return 0, nil, fmt.Errorf("write alive and hosting entries: %w", err)
	}
	if len(old.Kvs) == 1 && old.Kvs[0].Lease != 0 && clientv3.LeaseID(old.Kvs[0].Lease) != g.ID {
		prev, perr := ParseAlive(old.Kvs[0].Value)
		if perr != nil || !prev.Equal(d.cfg.Self) {
			d.cfg.Logger.Warn("directory: took over the entries of an earlier incarnation of this md-id (a restart within the lease; md-ids must be unique)", "md_id", d.cfg.ID)
		}
		if _, err := cl.Revoke(octx, clientv3.LeaseID(old.Kvs[0].Lease)); err != nil {
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
			if !d.sleep(ctx, &backoff) {
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
		if ctx.Err() == nil && !d.sleep(ctx, &backoff) {
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
