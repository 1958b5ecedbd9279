package keydist

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Store is a Key Distributor replica's connection to the shared etcd store
// (issue 14): it owns the replica's lease, the key that seals EKT
// parameter sets, the store error counter and the readiness check. The
// EKT source (NewEtcdEKT) and the registry's dynamic layer
// (AttachRegistry) are built on it.
//
// Under the prefix, KDs write only below kd/:
//
//	kd/ekt/set/<conference>              sealed EKT parameter set
//	kd/ekt/members/<conference>/<replica> "" on the replica's lease while it
//	                                     has members of the conference
//	kd/registry/conf/<conference>        {"conference","allow_legacy"}
//	kd/registry/ep/<conference>/<id>     an endpoint added through the API
//	kd/registry/revoked/<conference>/<id> a file entry removed through the API
//	kd/registry/tlsid/<digest>           the conference that holds a tls-id
//
// Every request is bounded by StoreConfig.Timeout: when etcd is
// unreachable, what needs it fails with ErrStoreUnavailable (counted in
// keydist_store_errors_total{op}, logged rate-limited) and what does not
// (established associations, joins of conferences whose set this replica
// already holds) goes on.
type Store struct {
	cl      *clientv3.Client
	prefix  string
	replica string
	timeout time.Duration
	ttl     time.Duration
	aead    cipher.AEAD
	log     *slog.Logger
	rl      *rateLog
	errs    *prometheus.CounterVec

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// failedAt is when a request last failed for want of etcd (Unix
	// nanoseconds; 0 after a success): for a second after it, requests made
	// on a KD worker fail at once instead of waiting out the timeout again.
	failedAt atomic.Int64

	mu       sync.Mutex
	lease    clientv3.LeaseID // 0 while none is held
	onLease  []func()         // told (from the lease goroutine) after a new lease
	registry *regMirror       // nil unless AttachRegistry

	pubMu    sync.Mutex
	pubWant  map[string]string   // this replica's association records
	pubDirty map[string]struct{} // keys to write (or delete)
	pubKick  chan struct{}

	remMu  sync.Mutex
	remote map[string]*remoteAssoc // other replicas' records, by key below kd/assoc/
	alive  map[string]bool         // replicas whose alive key exists
}

// StoreConfig configures a Store.
type StoreConfig struct {
	// Client is the etcd client (etcdclient.New); the caller closes it
	// after Store.Close.
	Client *clientv3.Client
	// Prefix of every key (etcdclient.Config.Key("")), e.g. "/mdfast/v1/".
	Prefix string
	// SealKey is the 32-octet AES-256-GCM key that seals the EKT parameter
	// sets (ekt-store-key-file); every replica must have the same. The
	// Store keeps its own copy; the caller may zero its slice.
	SealKey []byte
	// Timeout bounds every store request (DefaultStoreTimeout).
	Timeout time.Duration
	// LeaseTTL is the replica's lease (DefaultStoreLease): a dead
	// replica's membership of conferences expires within it.
	LeaseTTL time.Duration
	// Replica names this replica in keys (default: a fresh uuid).
	Replica string
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Metrics, if not nil, receives keydist_store_errors_total.
	Metrics prometheus.Registerer
}

// Defaults of StoreConfig.
const (
	DefaultStoreTimeout = 3 * time.Second
	DefaultStoreLease   = 10 * time.Second
)

// Store error ops (the op label of keydist_store_errors_total).
const (
	storeOpLease    = "lease"
	storeOpEKTGet   = "ekt_current"
	storeOpEKTRekey = "ekt_rekey"
	storeOpForget   = "ekt_forget"
	storeOpWatch    = "watch"
	storeOpValue    = "bad_value"
	storeOpRegistry = "registry_write"
	storeOpRegLoad  = "registry_load"
	storeOpAssoc    = "association_publish"
)

// NewStore checks cfg and starts the lease goroutine (it keeps trying
// while etcd is unreachable). Close stops it.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("keydist: StoreConfig.Client is required")
	}
	if len(cfg.SealKey) != StoreKeyLen {
		return nil, fmt.Errorf("keydist: store key of %d octets, want %d", len(cfg.SealKey), StoreKeyLen)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/mdfast/v1/"
	}
	cfg.Timeout = cmp0(cfg.Timeout, DefaultStoreTimeout)
	cfg.LeaseTTL = cmp0(cfg.LeaseTTL, DefaultStoreLease)
	if cfg.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("keydist: store lease %v below 2s", cfg.LeaseTTL)
	}
	if cfg.Replica == "" {
		cfg.Replica = uuid.NewString()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	aead, err := newSealAEAD(cfg.SealKey)
	if err != nil {
		return nil, err
	}
	s := &Store{cl: cfg.Client, prefix: cfg.Prefix, replica: cfg.Replica, timeout: cfg.Timeout, ttl: cfg.LeaseTTL,
		aead: aead, log: cfg.Logger, rl: newRateLog(cfg.Logger, 10*time.Second, 10),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keydist", Name: "store_errors_total",
			Help: "Requests to the etcd store that failed (unreachable, timed out, or a value refused), by operation.",
		}, []string{"op"}),
	}
	for _, op := range []string{storeOpLease, storeOpEKTGet, storeOpEKTRekey, storeOpForget, storeOpWatch, storeOpValue, storeOpRegistry, storeOpRegLoad, storeOpAssoc} {
		s.errs.WithLabelValues(op)
	}
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(s.errs); err != nil {
			return nil, fmt.Errorf("keydist: register store metrics: %w", err)
		}
	}
	s.pubWant, s.pubDirty, s.pubKick = map[string]string{}, map[string]struct{}{}, make(chan struct{}, 1)
	s.remote, s.alive = map[string]*remoteAssoc{}, map[string]bool{}
	s.onLease = append(s.onLease, s.republish)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Go(s.leaseLoop)
	s.wg.Go(s.publishLoop)
	s.wg.Go(s.assocMirrorLoop)
	return s, nil
}

// newSealAEAD returns the AES-256-GCM that seals EKT parameter sets; it
// keeps its own expanded copy of key.
func newSealAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != StoreKeyLen {
		return nil, fmt.Errorf("keydist: store key of %d octets, want %d", len(key), StoreKeyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keydist: store key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keydist: store key: %w", err)
	}
	return aead, nil
}

// Close stops the store's goroutines (the EKT source's and the registry's
// too) and revokes the lease, so that other replicas see at once that this
// one holds no member any more.
func (s *Store) Close() error {
	s.cancel()
	s.wg.Wait()
	// The associations the KD ended on its way down are deleted one by
	// one, so that the other replicas see ends, not a vanished replica.
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	s.flushPublished(ctx)
	cancel()
	s.mu.Lock()
	id := s.lease
	s.lease = 0
	s.mu.Unlock()
	if id != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		if _, err := s.cl.Revoke(ctx, id); err != nil {
			return fmt.Errorf("keydist: revoke the store lease: %w", err)
		}
	}
	return nil
}

// Replica is this replica's name in store keys.
func (s *Store) Replica() string { return s.replica }

// key returns the full key of path below the prefix.
func (s *Store) key(path string) string { return s.prefix + path }

// reqCtx bounds one store request.
func (s *Store) reqCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.timeout)
}

// fail counts and logs (rate-limited) a failed store request and returns
// it wrapped in ErrStoreUnavailable (or ErrStoreValue, kept).
func (s *Store) fail(op string, err error) error {
	if errors.Is(err, ErrStoreValue) {
		s.errs.WithLabelValues(storeOpValue).Inc()
		s.rl.Log(slog.LevelError, "store_value", "refused a value in the store", "op", op, "err", err)
		return err
	}
	s.failedAt.Store(time.Now().UnixNano())
	s.errs.WithLabelValues(op).Inc()
	s.rl.Log(slog.LevelWarn, "store_"+op, "etcd store request failed", "op", op, "err", err)
	return fmt.Errorf("%w: %s: %w", ErrStoreUnavailable, op, err)
}

// Errors returns the counter of failed store requests for op (tests).
func (s *Store) errCount(op string) prometheus.Counter { return s.errs.WithLabelValues(op) }

// failFast is the circuit breaker of requests made on a KD worker: within
// a second of a failure they fail at once (counted under op).
func (s *Store) failFast(op string) error {
	at := s.failedAt.Load()
	if at == 0 || time.Since(time.Unix(0, at)) > time.Second {
		return nil
	}
	s.errs.WithLabelValues(op).Inc()
	return fmt.Errorf("%w: %s: failed less than a second ago", ErrStoreUnavailable, op)
}

// ok records a request that etcd answered.
func (s *Store) ok() { s.failedAt.Store(0) }

// currentLease returns the replica's lease, or ErrStoreUnavailable.
func (s *Store) currentLease() (clientv3.LeaseID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease == 0 {
		return 0, fmt.Errorf("%w: this replica holds no lease yet", ErrStoreUnavailable)
	}
	return s.lease, nil
}

// subscribeLease registers f, called after every new lease (the first
// one included): what was put on the lost lease must be put again.
func (s *Store) subscribeLease(f func()) {
	s.mu.Lock()
	s.onLease = append(s.onLease, f)
	s.mu.Unlock()
}

// leaseLoop grants the replica's lease and keeps it alive; when it is lost
// (etcd unreachable past its TTL), it grants a new one as soon as etcd
// answers and tells the subscribers.
func (s *Store) leaseLoop() {
	backoff := 100 * time.Millisecond
	for s.ctx.Err() == nil {
		ctx, cancel := s.reqCtx()
		g, err := s.cl.Grant(ctx, int64(s.ttl/time.Second))
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				_ = s.fail(storeOpLease, err)
			}
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		ka, err := s.cl.KeepAlive(s.ctx, g.ID)
		if err != nil {
			_ = s.fail(storeOpLease, err)
			continue
		}
		s.mu.Lock()
		s.lease = g.ID
		subs := append([]func(){}, s.onLease...)
		s.mu.Unlock()
		s.log.Info("store lease granted", "replica", s.replica, "lease", fmt.Sprintf("%x", int64(g.ID)), "ttl", s.ttl)
		for _, f := range subs {
			f()
		}
		for range ka { // drained until the lease is lost or s.ctx ends
		}
		s.mu.Lock()
		if s.lease == g.ID && s.ctx.Err() == nil {
			s.lease = 0
		}
		s.mu.Unlock()
		if s.ctx.Err() == nil {
			_ = s.fail(storeOpLease, errors.New("lease lost (etcd unreachable past its TTL)"))
		}
	}
}

// Check is the store's readiness condition: etcd answers within the bound
// and the replica holds its lease.
func (s *Store) Check() error {
	ctx, cancel := s.reqCtx()
	defer cancel()
	if _, err := s.cl.Get(ctx, s.key("kd/"), clientv3.WithCountOnly(), clientv3.WithPrefix()); err != nil {
		s.failedAt.Store(time.Now().UnixNano())
		return fmt.Errorf("etcd store unreachable: %w", err)
	}
	s.ok()
	if _, err := s.currentLease(); err != nil {
		return err
	}
	s.mu.Lock()
	reg := s.registry
	s.mu.Unlock()
	if reg != nil && !reg.isLoaded() {
		return errors.New("registry not loaded from the store yet")
	}
	return nil
}
