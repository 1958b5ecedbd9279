package keydist

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdfast/mdfast/internal/sdp"
)

// Defaults of JoinConfig.
const (
	DefaultJoinTimeout       = 60 * time.Second
	DefaultJoinMaxSessions   = 10000
	DefaultJoinRate          = 50.0 // requests per second, all sources
	DefaultJoinBurst         = 100
	DefaultJoinRatePerSource = 2.0 // requests per second per source (/32, /64)
	DefaultJoinBurstSource   = 10
	defaultJoinSweep         = time.Second
	mdCallTimeout            = 5 * time.Second
)

// Content types of the join endpoint (RFC 9725).
const (
	contentSDP     = "application/sdp"
	contentSDPFrag = "application/trickle-ice-sdpfrag"
)

// JoinConfig configures the join endpoint.
type JoinConfig struct {
	// Registry is where joined endpoints are registered. Required.
	Registry *Registry
	// MD is the Media Distributor's control API. Required.
	MD MDSessions
	// Associations lists the KD's live associations (KeyDistributor.
	// Associations); a session is bound to the established association of
	// its endpoint and ends with it. Required.
	Associations func() []AssociationInfo
	// Fingerprint is the KD's DTLS certificate fingerprint. Required.
	Fingerprint Fingerprint
	// Candidates are the MD's media addresses (one host candidate each).
	// Required.
	Candidates []netip.AddrPort
	// Secret signs join tokens (MintJoinToken); at least MinJoinSecret
	// bytes. Required.
	Secret []byte
	// Timeout ends a session whose DTLS association has not completed
	// this long after the offer (default DefaultJoinTimeout).
	Timeout time.Duration
	// MaxSessions bounds the live sessions (default DefaultJoinMaxSessions).
	MaxSessions int
	// Rate and Burst limit requests from all sources together; RatePerSource
	// and BurstPerSource those from one IPv4 address or IPv6 /64 (defaults
	// DefaultJoinRate ...).
	Rate, RatePerSource   float64
	Burst, BurstPerSource int
	// AllowOrigins are the web origins allowed by CORS ("*": any); empty:
	// no CORS headers (non-browser clients only).
	AllowOrigins []string
	// Logger (default slog.Default()); Metrics (default: not registered).
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// SweepInterval is how often sessions are checked against the
	// associations (default 1 s); now is the clock (tests).
	SweepInterval time.Duration
	now           func() time.Time
}

// joinSession is one joined endpoint.
type joinSession struct {
	id, conf    string
	fp          Fingerprint
	tlsID       string // endpoint's ("" legacy)
	kdTLSID     string
	mdUfrag     string
	mdPwd       string
	remoteUfrag string
	mid         string // first accepted mid, for sdpfrag answers
	etag        string
	created     time.Time
	bound       bool
	assoc       uuid.UUID
}

// Join is the WHIP-style join endpoint (see the package doc): it owns the
// sessions, the goroutine that binds them to associations and expires
// them, and what it registered at the KD registry and at the MD.
type Join struct {
	cfg JoinConfig
	log *slog.Logger
	rl  *rateLog
	lim *limiter
	m   joinMetrics

	mu       sync.Mutex
	sessions map[string]*joinSession
	joining  int             // offers between the limit check and their session
	closing  bool            // Close has begun: no new session is stored
	mdDelete map[string]bool // MD sessions whose DELETE failed, retried

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type joinMetrics struct {
	requests *prometheus.CounterVec
	sessions prometheus.Gauge
	ended    *prometheus.CounterVec
}

// NewJoin validates cfg and starts the join endpoint's sweeper; Close
// stops it.
func NewJoin(cfg JoinConfig) (*Join, error) {
	switch {
	case cfg.Registry == nil || cfg.MD == nil || cfg.Associations == nil:
		return nil, errors.New("keydist: JoinConfig.Registry, MD and Associations are required")
	case cfg.Fingerprint == (Fingerprint{}):
		return nil, errors.New("keydist: JoinConfig.Fingerprint is required")
	case len(cfg.Candidates) == 0:
		return nil, errors.New("keydist: JoinConfig.Candidates: give the MD's media addresses")
	case len(cfg.Secret) < MinJoinSecret:
		return nil, fmt.Errorf("keydist: JoinConfig.Secret of %d bytes, want at least %d", len(cfg.Secret), MinJoinSecret)
	}
	for _, c := range cfg.Candidates {
		if !c.IsValid() || c.Port() == 0 || c.Addr().IsUnspecified() {
			return nil, fmt.Errorf("keydist: JoinConfig.Candidates: %s is not a usable media address", c)
		}
	}
	def := func(p *float64, v float64) {
		if *p <= 0 {
			*p = v
		}
	}
	defInt := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&cfg.Rate, DefaultJoinRate)
	def(&cfg.RatePerSource, DefaultJoinRatePerSource)
	defInt(&cfg.Burst, DefaultJoinBurst)
	defInt(&cfg.BurstPerSource, DefaultJoinBurstSource)
	defInt(&cfg.MaxSessions, DefaultJoinMaxSessions)
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultJoinTimeout
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = defaultJoinSweep
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	j := &Join{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "join"),
		lim:      newLimiter(cfg.Rate, cfg.Burst, cfg.RatePerSource, cfg.BurstPerSource),
		sessions: map[string]*joinSession{},
		mdDelete: map[string]bool{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	j.rl = newRateLog(j.log, 10*time.Second, 5)
	j.m = joinMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keydist", Name: "join_requests_total",
			Help: "Join endpoint requests by method and result.",
		}, []string{"method", "result"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "keydist", Name: "join_sessions",
			Help: "Live join sessions.",
		}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keydist", Name: "join_sessions_ended_total",
			Help: "Join sessions ended, by reason.",
		}, []string{"reason"}),
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{j.m.requests, j.m.sessions, j.m.ended} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("keydist: register join metrics: %w", err)
			}
		}
	}
	go j.sweeper()
	return j, nil
}

// Close stops the sweeper and removes every session (KD registry and MD),
// waiting at most a few seconds for the MD.
func (j *Join) Close() error {
	j.once.Do(func() { close(j.stop) })
	<-j.done
	j.mu.Lock()
	j.closing = true
	all := make([]*joinSession, 0, len(j.sessions))
	for _, s := range j.sessions {
		all = append(all, s)
	}
	j.mu.Unlock()
	for _, s := range all {
		j.end(s, "shutdown")
	}
	return nil
}

// Handler returns the HTTP handler of the join endpoint:
//
//	POST   /v1/join/{conference}        application/sdp offer -> 201, Location, answer
//	PATCH  /v1/join/sessions/{id}       application/trickle-ice-sdpfrag -> 200 (ICE restart) or 204
//	DELETE /v1/join/sessions/{id}       -> 204
//	OPTIONS on both                     CORS preflight (when AllowOrigins is set)
func (j *Join) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/join/{conf}", j.post)
	mux.HandleFunc("PATCH /v1/join/sessions/{id}", j.patch)
	mux.HandleFunc("DELETE /v1/join/sessions/{id}", j.delete)
	mux.HandleFunc("OPTIONS /v1/join/{conf}", j.options)
	mux.HandleFunc("OPTIONS /v1/join/sessions/{id}", j.options)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.cors(w, r)
		mux.ServeHTTP(w, r)
	})
}

// cors sets the CORS response headers for an allowed Origin.
func (j *Join) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" || len(j.cfg.AllowOrigins) == 0 {
		return
	}
	if !slices.Contains(j.cfg.AllowOrigins, "*") && !slices.Contains(j.cfg.AllowOrigins, origin) {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Location, ETag")
}

func (j *Join) options(w http.ResponseWriter, r *http.Request) {
	if !j.admit(w, r) {
		return
	}
	h := w.Header()
	h.Set("Allow", "OPTIONS, POST, PATCH, DELETE")
	if h.Get("Access-Control-Allow-Origin") != "" {
		h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
		h.Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
}

// fail answers an error: status, a plain-text message, the result counted
// and logged rate-limited under the result.
func (j *Join) fail(w http.ResponseWriter, r *http.Request, code int, result string, msg string) {
	j.m.requests.WithLabelValues(r.Method, result).Inc()
	j.rl.Log(slog.LevelInfo, "join_"+result, "join: request refused", "method", r.Method, "status", code, "err", msg)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keydist-join"`)
	}
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// admit applies the rate limits.
func (j *Join) admit(w http.ResponseWriter, r *http.Request) bool {
	src := remoteAddr(r)
	if why := j.lim.allow(src, j.cfg.now()); why != "" {
		j.fail(w, r, http.StatusTooManyRequests, "rate_limited_"+why, "too many requests")
		return false
	}
	return true
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// auth checks the bearer join token for conference conf; expiry only
// when checkExpiry (a session's PATCH and DELETE are allowed with the
// token that created it after it expired: the session URL is a 128-bit
// secret and the token still proves the conference).
func (j *Join) auth(w http.ResponseWriter, r *http.Request, conf string, checkExpiry bool) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		j.fail(w, r, http.StatusUnauthorized, "unauthorized", "a join token is required (Authorization: Bearer)")
		return false
	}
	tconf, _, err := verifyJoinToken(j.cfg.Secret, strings.TrimSpace(tok), j.cfg.now(), checkExpiry)
	switch {
	case errors.Is(err, ErrJoinTokenExpired):
		j.fail(w, r, http.StatusUnauthorized, "token_expired", "the join token has expired")
		return false
	case err != nil:
		j.fail(w, r, http.StatusUnauthorized, "unauthorized", "invalid join token")
		return false
	case tconf != conf:
		j.fail(w, r, http.StatusForbidden, "forbidden", "the join token is for another conference")
		return false
	}
	return true
}

// contentType reports whether r's Content-Type is want.
func contentType(r *http.Request, want string) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == want
}

// readBody reads at most sdp.MaxOffer bytes; false (answered 413) if more.
func (j *Join) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, sdp.MaxOffer))
	if err != nil {
		if _, big := errors.AsType[*http.MaxBytesError](err); big {
			j.fail(w, r, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", sdp.MaxOffer))
		} else {
			j.fail(w, r, http.StatusBadRequest, "bad_body", "could not read the body")
		}
		return nil, false
	}
	return b, true
}

// sdpStatus maps an offer error to a status and result label.
func sdpStatus(err error) (int, string) {
	for _, k := range []struct {
		err    error
		result string
	}{
		{sdp.ErrNoDTLS, "no_dtls"}, {sdp.ErrFingerprintHash, "fingerprint_hash"}, {sdp.ErrSetup, "setup"},
		{sdp.ErrNoRTCPMux, "no_rtcp_mux"}, {sdp.ErrBundle, "bundle"}, {sdp.ErrICE, "ice"}, {sdp.ErrNoMedia, "no_media"},
	} {
		if errors.Is(err, k.err) {
			return http.StatusBadRequest, k.result
		}
	}
	return http.StatusBadRequest, "malformed_sdp"
}

func (j *Join) post(w http.ResponseWriter, r *http.Request) {
	if !j.admit(w, r) {
		return
	}
	conf := r.PathValue("conf")
	if !j.auth(w, r, conf, true) {
		return
	}
	if !contentType(r, contentSDP) {
		j.fail(w, r, http.StatusUnsupportedMediaType, "content_type", "Content-Type must be "+contentSDP)
		return
	}
	body, ok := j.readBody(w, r)
	if !ok {
		return
	}
	c, ok := j.cfg.Registry.Conference(conf)
	if !ok {
		j.fail(w, r, http.StatusNotFound, "unknown_conference", fmt.Sprintf("no conference %q", conf))
		return
	}
	offer, err := sdp.ParseOffer(body)
	if err != nil {
		code, result := sdpStatus(err)
		j.fail(w, r, code, result, err.Error())
		return
	}
	if offer.TLSID == "" && !c.AllowLegacy {
		j.fail(w, r, http.StatusForbidden, "legacy_refused",
			fmt.Sprintf("the offer has no a=tls-id (a legacy WebRTC endpoint) and conference %q admits PERC endpoints only", conf))
		return
	}
	if offer.TLSID == "" {
		if other := j.cfg.Registry.LegacyConferences(offer.Fingerprint); len(other) > 0 {
			// Legacy endpoints are told apart by fingerprint only.
			j.fail(w, r, http.StatusConflict, "duplicate",
				"this certificate fingerprint has already joined a conference without a tls-id; use one certificate per conference")
			return
		}
	}
	// Reserve a place: at most MaxSessions, even under concurrent offers.
	j.mu.Lock()
	full := len(j.sessions)+j.joining >= j.cfg.MaxSessions
	if !full {
		j.joining++
	}
	j.mu.Unlock()
	if full {
		j.fail(w, r, http.StatusServiceUnavailable, "too_many_sessions", "too many join sessions")
		return
	}
	defer func() {
		j.mu.Lock()
		j.joining--
		j.mu.Unlock()
	}()
	ep, err := j.cfg.Registry.AddEndpoint(conf, Endpoint{TLSID: offer.TLSID, Fingerprint: offer.Fingerprint})
	if err != nil {
		if errors.Is(err, ErrDuplicate) {
			j.fail(w, r, http.StatusConflict, "duplicate", "this certificate fingerprint or tls-id has already joined the conference")
		} else if errors.Is(err, ErrStoreUnavailable) {
			w.Header().Set("Retry-After", "5")
			j.fail(w, r, http.StatusServiceUnavailable, "store_unavailable", "the key distributor's store (etcd) is unreachable; try again shortly")
		} else {
			j.fail(w, r, http.StatusBadRequest, "registry", err.Error())
		}
		return
	}
	s := &joinSession{
		id: randomID(), conf: conf, fp: offer.Fingerprint, tlsID: offer.TLSID, kdTLSID: ep.KDTLSID,
		mdUfrag: randomICE(8), mdPwd: randomICE(24), remoteUfrag: offer.ICEUfrag,
		etag: `"` + randomICE(12) + `"`, created: j.cfg.now(),
	}
	for _, m := range offer.Media {
		if m.Accepted {
			s.mid = m.Mid
			break
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), mdCallTimeout)
	err = j.cfg.MD.PutSession(ctx, s.id, j.mdSession(s))
	cancel()
	if err != nil {
		j.unregister(s)
		// The MD may have stored it before the error reached us.
		dctx, dcancel := context.WithTimeout(context.Background(), mdCallTimeout)
		if derr := j.cfg.MD.DeleteSession(dctx, s.id); derr != nil {
			j.mu.Lock()
			j.mdDelete[s.id] = true
			j.mu.Unlock()
		}
		dcancel()
		j.log.Warn("join: the MD refused the session; registration rolled back", "conference", conf, "err", err)
		j.fail(w, r, http.StatusBadGateway, "md_error", "the media distributor did not accept the session")
		return
	}
	j.mu.Lock()
	closing := j.closing
	if !closing {
		j.sessions[s.id] = s
	}
	j.mu.Unlock()
	if closing {
		j.unregister(s)
		dctx, dcancel := context.WithTimeout(context.Background(), mdCallTimeout)
		_ = j.cfg.MD.DeleteSession(dctx, s.id)
		dcancel()
		j.fail(w, r, http.StatusServiceUnavailable, "shutting_down", "the key distributor is shutting down")
		return
	}
	j.m.sessions.Inc()
	j.m.requests.WithLabelValues(r.Method, "ok").Inc()
	j.log.Info("join: session created", "session", s.id, "conference", conf, "perc", s.tlsID != "", "fingerprint", s.fp)
	answer := j.answer(s)
	h := w.Header()
	h.Set("Content-Type", contentSDP)
	h.Set("Location", "/v1/join/sessions/"+s.id)
	h.Set("ETag", s.etag)
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(answer.Write(offer))
}

func (j *Join) answer(s *joinSession) *sdp.Answer {
	a := &sdp.Answer{ICEUfrag: s.mdUfrag, ICEPwd: s.mdPwd, Fingerprint: j.cfg.Fingerprint, Candidates: j.cfg.Candidates}
	var b [8]byte
	_, _ = rand.Read(b[:])
	a.SessionID = binary.BigEndian.Uint64(b[:])
	if s.tlsID != "" {
		a.TLSID = s.kdTLSID
	}
	return a
}

func (j *Join) mdSession(s *joinSession) MDSession {
	return MDSession{Conference: s.conf, TLSID: s.tlsID, ICEUfrag: s.mdUfrag, ICEPwd: s.mdPwd, RemoteUfrag: s.remoteUfrag}
}

// session finds session id and checks the token for its conference.
func (j *Join) session(w http.ResponseWriter, r *http.Request) (*joinSession, bool) {
	if !j.admit(w, r) {
		return nil, false
	}
	id := r.PathValue("id")
	j.mu.Lock()
	s := j.sessions[id]
	var conf string
	if s != nil {
		conf = s.conf
	}
	j.mu.Unlock()
	if s == nil {
		// Token first: an unauthenticated caller learns nothing about ids.
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, _, err := verifyJoinToken(j.cfg.Secret, strings.TrimSpace(tok), j.cfg.now(), false); err != nil {
			j.fail(w, r, http.StatusUnauthorized, "unauthorized", "invalid join token")
			return nil, false
		}
		j.fail(w, r, http.StatusNotFound, "unknown_session", "no such session")
		return nil, false
	}
	if !j.auth(w, r, conf, false) {
		return nil, false
	}
	return s, true
}

func (j *Join) patch(w http.ResponseWriter, r *http.Request) {
	s, ok := j.session(w, r)
	if !ok {
		return
	}
	if !contentType(r, contentSDPFrag) {
		j.fail(w, r, http.StatusUnsupportedMediaType, "content_type", "Content-Type must be "+contentSDPFrag)
		return
	}
	body, ok := j.readBody(w, r)
	if !ok {
		return
	}
	frag, err := sdp.ParseFrag(body)
	if err != nil {
		_, result := sdpStatus(err)
		j.fail(w, r, http.StatusBadRequest, result, err.Error())
		return
	}
	if !frag.Restart() {
		// Trickled candidates: an ICE-lite server answers checks from
		// wherever they come and needs none.
		j.m.requests.WithLabelValues(r.Method, "trickle").Inc()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	j.mu.Lock()
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != s.etag {
		j.mu.Unlock()
		j.fail(w, r, http.StatusPreconditionFailed, "etag", "If-Match does not match the session's ETag")
		return
	}
	next := *s
	j.mu.Unlock()
	next.mdUfrag, next.mdPwd, next.remoteUfrag = randomICE(8), randomICE(24), frag.ICEUfrag
	next.etag = `"` + randomICE(12) + `"`
	ctx, cancel := context.WithTimeout(r.Context(), mdCallTimeout)
	err = j.cfg.MD.PutSession(ctx, s.id, j.mdSession(&next))
	cancel()
	if err != nil {
		j.log.Warn("join: the MD refused the ICE restart; the session keeps its credentials", "session", s.id, "err", err)
		j.fail(w, r, http.StatusBadGateway, "md_error", "the media distributor did not accept the ICE restart")
		return
	}
	j.mu.Lock()
	if j.sessions[s.id] != s {
		j.mu.Unlock()
		j.fail(w, r, http.StatusNotFound, "unknown_session", "the session ended")
		return
	}
	s.mdUfrag, s.mdPwd, s.remoteUfrag, s.etag = next.mdUfrag, next.mdPwd, next.remoteUfrag, next.etag
	j.mu.Unlock()
	j.m.requests.WithLabelValues(r.Method, "ice_restart").Inc()
	j.log.Info("join: ICE restart", "session", s.id, "conference", s.conf)
	w.Header().Set("Content-Type", contentSDPFrag)
	w.Header().Set("ETag", next.etag)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(j.answer(&next).WriteFrag(next.mid))
}

func (j *Join) delete(w http.ResponseWriter, r *http.Request) {
	s, ok := j.session(w, r)
	if !ok {
		return
	}
	j.end(s, "deleted")
	j.m.requests.WithLabelValues(r.Method, "ok").Inc()
	w.WriteHeader(http.StatusNoContent)
}

// unregister removes s's endpoint from the registry (which ends its
// association, if any).
func (j *Join) unregister(s *joinSession) {
	fp := s.fp
	if _, err := j.cfg.Registry.RemoveEndpoint(s.conf, s.tlsID, &fp); err != nil && !errors.Is(err, ErrNotFound) {
		j.log.Warn("join: could not remove the endpoint from the registry", "session", s.id, "err", err)
	}
}

// end removes session s everywhere, once.
func (j *Join) end(s *joinSession, reason string) {
	j.mu.Lock()
	if j.sessions[s.id] != s {
		j.mu.Unlock()
		return
	}
	delete(j.sessions, s.id)
	j.mu.Unlock()
	j.m.sessions.Dec()
	j.m.ended.WithLabelValues(reason).Inc()
	j.unregister(s)
	ctx, cancel := context.WithTimeout(context.Background(), mdCallTimeout)
	defer cancel()
	if err := j.cfg.MD.DeleteSession(ctx, s.id); err != nil {
		j.log.Warn("join: could not delete the session at the MD; retrying", "session", s.id, "err", err)
		j.mu.Lock()
		j.mdDelete[s.id] = true
		j.mu.Unlock()
	}
	j.log.Info("join: session ended", "session", s.id, "conference", s.conf, "reason", reason)
}

func (j *Join) sweeper() {
	defer close(j.done)
	t := time.NewTicker(j.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			j.sweep()
		}
	}
}

// assocKey identifies an endpoint among the KD's associations.
type joinAssocKey struct {
	conf, tlsID, fp string
}

// sweep binds sessions to their established associations, ends those
// whose association ended or that never got one within the timeout, and
// retries failed MD deletions.
func (j *Join) sweep() {
	live := map[uuid.UUID]bool{}
	established := map[joinAssocKey]uuid.UUID{}
	for _, a := range j.cfg.Associations() {
		live[a.ID] = true
		if a.State == "established" {
			established[joinAssocKey{a.Conference, a.TLSID, a.Fingerprint}] = a.ID
		}
	}
	now := j.cfg.now()
	var ended []*joinSession
	var reasons []string
	j.mu.Lock()
	for _, s := range j.sessions {
		switch {
		case s.bound && !live[s.assoc]:
			ended, reasons = append(ended, s), append(reasons, "association_ended")
		case s.bound:
		default:
			if id, ok := established[joinAssocKey{s.conf, s.tlsID, s.fp.String()}]; ok {
				s.bound, s.assoc = true, id
				j.log.Info("join: session bound to its association", "session", s.id, "association", id)
			} else if now.Sub(s.created) >= j.cfg.Timeout {
				ended, reasons = append(ended, s), append(reasons, "join_timeout")
			}
		}
	}
	retry := make([]string, 0, len(j.mdDelete))
	for id := range j.mdDelete {
		retry = append(retry, id)
	}
	j.mu.Unlock()
	for i, s := range ended {
		j.end(s, reasons[i])
	}
	for _, id := range retry {
		ctx, cancel := context.WithTimeout(context.Background(), mdCallTimeout)
		err := j.cfg.MD.DeleteSession(ctx, id)
		cancel()
		if err == nil {
			j.mu.Lock()
			delete(j.mdDelete, id)
			j.mu.Unlock()
		}
	}
}

// JoinSessionInfo describes one live join session (admin view).
type JoinSessionInfo struct {
	ID          string    `json:"id"`
	Conference  string    `json:"conference"`
	TLSID       string    `json:"tls_id,omitempty"`
	Fingerprint string    `json:"fingerprint"`
	Association string    `json:"association,omitempty"`
	Created     time.Time `json:"created"`
}

// Sessions lists the live join sessions, oldest first.
func (j *Join) Sessions() []JoinSessionInfo {
	j.mu.Lock()
	out := make([]JoinSessionInfo, 0, len(j.sessions))
	for _, s := range j.sessions {
		in := JoinSessionInfo{ID: s.id, Conference: s.conf, TLSID: s.tlsID, Fingerprint: s.fp.String(), Created: s.created}
		if s.bound {
			in.Association = s.assoc.String()
		}
		out = append(out, in)
	}
	j.mu.Unlock()
	slices.SortFunc(out, func(a, b JoinSessionInfo) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// randomID returns a session id: 128 random bits, hex.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// randomICE returns n random ice-chars (ALPHA / DIGIT), about 5.95 bits
// each (RFC 8445 section 5.3 asks for at least 24 bits in a ufrag and 128
// in a password: 8 and 24 characters give 47 and 142).
func randomICE(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		// 248 = 4*62: reject the top values so that every character is
		// equally likely.
		for b[i] >= 248 {
			var c [1]byte
			_, _ = rand.Read(c[:])
			b[i] = c[0]
		}
		b[i] = alphabet[b[i]%62]
	}
	return string(b)
}

// limiter is a token-bucket rate limit, global and per source (IPv4
// address, IPv6 /64), with a bounded number of tracked sources.
type limiter struct {
	mu              sync.Mutex
	rate, perRate   float64
	burst, perBurst float64
	global          bucket
	per             map[netip.Prefix]*bucket
	maxSources      int
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, perRate float64, perBurst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), perRate: perRate, perBurst: float64(perBurst),
		global: bucket{tokens: float64(burst)}, per: map[netip.Prefix]*bucket{}, maxSources: 4096}
}

// take refills b and takes a token if there is one.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if !b.last.IsZero() {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// allow returns "" when a request from src may proceed, else which limit
// refused it ("source" or "global"). A request refused per source does not
// spend a global token.
func (l *limiter) allow(src netip.Addr, now time.Time) string {
	bits := 32
	if src.Is6() {
		bits = 64
	}
	p, _ := src.Prefix(bits)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.per[p]
	if b == nil {
		if len(l.per) >= l.maxSources {
			for k, o := range l.per {
				if now.Sub(o.last).Seconds()*l.perRate+o.tokens >= l.perBurst {
					delete(l.per, k) // full again: forgetting it changes nothing
				}
			}
			if len(l.per) >= l.maxSources {
				clear(l.per)
			}
		}
		b = &bucket{tokens: l.perBurst}
		l.per[p] = b
	}
	if !b.take(now, l.perRate, l.perBurst) {
		return "source"
	}
	if !l.global.take(now, l.rate, l.burst) {
		b.tokens++ // give the source its token back
		return "global"
	}
	return ""
}
