package keydist

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mdfast/mdfast/internal/identity"
)

// Fingerprint is the SHA-256 fingerprint of a DER certificate (package
// identity).
type Fingerprint = identity.Fingerprint

// CertificateFingerprint returns the SHA-256 fingerprint of a DER
// certificate.
func CertificateFingerprint(der []byte) Fingerprint { return identity.CertificateFingerprint(der) }

// ParseFingerprint parses a SHA-256 fingerprint as SDP writes it (see
// identity.ParseFingerprint).
func ParseFingerprint(s string) (Fingerprint, error) { return identity.ParseFingerprint(s) }

// ValidateTLSID checks a tls-id value (RFC 8842 section 5).
func ValidateTLSID(id string) error { return identity.ValidateTLSID(id) }

// NewTLSID returns a fresh KD tls-id (see identity.NewTLSID).
func NewTLSID() string { return identity.NewTLSID() }

// ValidateConferenceID checks a conference id: 1 to 128 characters of
// ALPHA / DIGIT / "-" / "_" / "." / ":" / "@" (safe in a URL path).
func ValidateConferenceID(id string) error {
	if len(id) == 0 || len(id) > 128 {
		return fmt.Errorf("conference id of %d characters, want 1..128: %w", len(id), ErrInvalidConference)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.:@", c) >= 0) {
			return fmt.Errorf("conference id character %d (0x%02x) not allowed: %w", i, c, ErrInvalidConference)
		}
	}
	return nil
}

// Endpoint is what the signalling told the KD about one endpoint's DTLS
// association: the tls-id and certificate fingerprint from its SDP, and the
// KD's own tls-id to put in the SDP answer.
type Endpoint struct {
	// TLSID is the endpoint's SDP tls-id, carried in its ClientHello as
	// external_session_id. It may be empty only in a conference that allows
	// legacy endpoints; such an entry is matched by fingerprint alone.
	TLSID string `json:"tls_id,omitempty" yaml:"tls_id,omitempty"`
	// Fingerprint is the SHA-256 fingerprint of the endpoint certificate.
	Fingerprint Fingerprint `json:"fingerprint" yaml:"fingerprint"`
	// KDTLSID is the tls-id the KD puts in its ServerHello for this
	// endpoint; the signalling puts it in the SDP answer. Generated (see
	// NewTLSID) when not given, and kept across file reloads.
	KDTLSID string `json:"kd_tls_id,omitempty" yaml:"kd_tls_id,omitempty"`
	// Source is "file" or "api" (output only).
	Source string `json:"source,omitempty" yaml:"-"`
}

// Conference is a conference and its endpoints.
type Conference struct {
	// ID names the conference.
	ID string `json:"id" yaml:"id"`
	// AllowLegacy accepts endpoints that send no external_session_id
	// (matched by certificate fingerprint alone). Default false.
	AllowLegacy bool `json:"allow_legacy" yaml:"allow_legacy"`
	// Endpoints are the registered endpoints.
	Endpoints []Endpoint `json:"endpoints" yaml:"endpoints"`
}

// entryKey identifies one registered endpoint.
type entryKey struct {
	conf  string
	tlsID string
	fp    Fingerprint
}

// confLayer is one source's view of a conference.
type confLayer struct {
	allowLegacy bool
	endpoints   []Endpoint
}

// Match is the registry entry an association was matched to.
type Match struct {
	// Conference is the conference id.
	Conference string
	// Endpoint is the matched entry.
	Endpoint Endpoint
	// Legacy is true when the endpoint sent no external_session_id and was
	// matched by fingerprint in a conference that allows that.
	Legacy bool
}

func (m *Match) key() entryKey {
	return entryKey{conf: m.Conference, tlsID: m.Endpoint.TLSID, fp: m.Endpoint.Fingerprint}
}

// snapshot is an immutable merged view, swapped atomically.
type snapshot struct {
	confs       map[string]*Conference
	byTLSID     map[string]Match
	legacyByFP  map[Fingerprint][]Match
	present     map[entryKey]bool // value: conference allows legacy
	anyLegacy   bool
	numEndpoint int
}

// lookupTLSID finds the entry registered under tls-id id.
func (s *snapshot) lookupTLSID(id []byte) (Match, bool) {
	m, ok := s.byTLSID[string(id)]
	return m, ok
}

// lookupLegacy finds the one entry of an allow_legacy conference with
// fingerprint fp. Two such entries (in two conferences) are ambiguous: no
// match.
func (s *snapshot) lookupLegacy(fp Fingerprint) (Match, bool) {
	ms := s.legacyByFP[fp]
	if len(ms) != 1 {
		return Match{}, false
	}
	m := ms[0]
	m.Legacy = true
	return m, true
}

// stillValid reports whether the entry m was matched to is still
// registered (and, for a legacy match, its conference still allows legacy).
func (s *snapshot) stillValid(m *Match) bool {
	allowLegacy, ok := s.present[m.key()]
	return ok && (!m.Legacy || allowLegacy)
}

// Registry maps conferences to the endpoints allowed to join them. It merges
// two sources: a file (replaced as a whole on each reload) and the admin
// API (endpoints added and removed one by one; removing a file entry through
// the API hides it until the API adds it again). Readers get an immutable
// snapshot swapped atomically; every change notifies the subscribers, which
// is how the KeyDistributor ends associations whose endpoint went away.
type Registry struct {
	mu      sync.Mutex
	file    map[string]*confLayer
	api     map[string]*confLayer
	revoked map[entryKey]bool
	kdIDs   map[entryKey]string
	subs    []func()
	snap    atomic.Pointer[snapshot]
	// store, when set (Store.AttachRegistry), holds the API layer: api
	// and revoked are then a mirror of it, changed only by setDynamic.
	store regStore
	// warn receives merge conflicts (a file entry shadowing an API entry).
	warn func(msg string, args ...any)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	r := &Registry{
		file:    map[string]*confLayer{},
		api:     map[string]*confLayer{},
		revoked: map[entryKey]bool{},
		kdIDs:   map[entryKey]string{},
		warn:    func(string, ...any) {},
	}
	r.snap.Store(r.merge())
	return r
}

// Subscribe registers f to be called (without locks held) after every
// change of the registry.
func (r *Registry) Subscribe(f func()) {
	r.mu.Lock()
	r.subs = append(r.subs, f)
	r.mu.Unlock()
}

func (r *Registry) current() *snapshot { return r.snap.Load() }

// publish merges the layers, swaps the snapshot and returns the
// subscribers to notify. Called with r.mu held.
func (r *Registry) publish() []func() {
	r.snap.Store(r.merge())
	return slices.Clone(r.subs)
}

func notify(subs []func()) {
	for _, f := range subs {
		f()
	}
}

// validateEndpoint checks an endpoint of conference conf.
func validateEndpoint(e *Endpoint, allowLegacy bool) error {
	if e.TLSID == "" {
		if !allowLegacy {
			return fmt.Errorf("endpoint %s: no tls_id in a conference without allow_legacy: %w", e.Fingerprint, ErrInvalidTLSID)
		}
	} else if err := ValidateTLSID(e.TLSID); err != nil {
		return fmt.Errorf("endpoint %s: tls_id: %w", e.Fingerprint, err)
	}
	if e.Fingerprint == (Fingerprint{}) {
		return fmt.Errorf("endpoint %q: no fingerprint: %w", e.TLSID, ErrInvalidFingerprint)
	}
	if e.KDTLSID != "" {
		if err := ValidateTLSID(e.KDTLSID); err != nil {
			return fmt.Errorf("endpoint %q: kd_tls_id: %w", e.TLSID, err)
		}
	}
	return nil
}

// validateConferences checks a whole set of conferences (a file): ids,
// endpoints, no tls-id twice.
func validateConferences(confs []Conference) error {
	seenConf := map[string]bool{}
	seenID := map[string]string{}
	for i := range confs {
		c := &confs[i]
		if err := ValidateConferenceID(c.ID); err != nil {
			return fmt.Errorf("conference %d: %w", i, err)
		}
		if seenConf[c.ID] {
			return fmt.Errorf("conference %q listed twice: %w", c.ID, ErrDuplicate)
		}
		seenConf[c.ID] = true
		seenFP := map[Fingerprint]bool{}
		for j := range c.Endpoints {
			e := &c.Endpoints[j]
			if err := validateEndpoint(e, c.AllowLegacy); err != nil {
				return fmt.Errorf("conference %q endpoint %d: %w", c.ID, j, err)
			}
			if e.TLSID != "" {
				if other, dup := seenID[e.TLSID]; dup {
					return fmt.Errorf("conference %q endpoint %d: tls_id also in conference %q: %w", c.ID, j, other, ErrDuplicate)
				}
				seenID[e.TLSID] = c.ID
			} else if seenFP[e.Fingerprint] {
				return fmt.Errorf("conference %q endpoint %d: legacy fingerprint listed twice: %w", c.ID, j, ErrDuplicate)
			}
			if e.TLSID == "" {
				seenFP[e.Fingerprint] = true
			}
		}
	}
	return nil
}

// ReplaceFile replaces the file source with confs (after validating all of
// it: on error nothing changes).
func (r *Registry) ReplaceFile(confs []Conference) error {
	if err := validateConferences(confs); err != nil {
		return fmt.Errorf("replace registry file source: %w", err)
	}
	layer := make(map[string]*confLayer, len(confs))
	for _, c := range confs {
		eps := make([]Endpoint, len(c.Endpoints))
		copy(eps, c.Endpoints)
		for i := range eps {
			eps[i].Source = "file"
		}
		layer[c.ID] = &confLayer{allowLegacy: c.AllowLegacy, endpoints: eps}
	}
	r.mu.Lock()
	r.file = layer
	subs := r.publish()
	r.mu.Unlock()
	notify(subs)
	return nil
}

// swapDynamic replaces the API layer with the store's (regMirror); the
// caller notifies the subscribers.
func (r *Registry) swapDynamic(api map[string]*confLayer, revoked map[entryKey]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.api, r.revoked = api, revoked
	r.snap.Store(r.merge())
}

// catchUp, with a store, waits until the registry holds every write the
// store had when it was called and returns the new snapshot; nil without
// a store or when the store did not answer.
func (r *Registry) catchUp() *snapshot {
	st := r.getStore()
	if st == nil || st.catchUp() != nil {
		return nil
	}
	return r.current()
}

// subscribers returns the functions Subscribe registered.
func (r *Registry) subscribers() []func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.subs)
}

func (r *Registry) getStore() regStore {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.store
}

// SetConference creates or updates a conference in the API source.
func (r *Registry) SetConference(id string, allowLegacy bool) error {
	if err := ValidateConferenceID(id); err != nil {
		return fmt.Errorf("set conference: %w", err)
	}
	if st := r.getStore(); st != nil {
		if err := st.setConference(id, allowLegacy); err != nil {
			return fmt.Errorf("set conference %q: %w", id, err)
		}
		return nil
	}
	r.mu.Lock()
	c := r.api[id]
	if c == nil {
		c = &confLayer{}
		r.api[id] = c
	}
	c.allowLegacy = allowLegacy
	subs := r.publish()
	r.mu.Unlock()
	notify(subs)
	return nil
}

// RemoveConference removes a conference: its API entries are deleted and
// its file entries hidden. Live associations of its endpoints end.
func (r *Registry) RemoveConference(id string) error {
	r.mu.Lock()
	_, inAPI := r.api[id]
	f, inFile := r.file[id]
	if !inAPI && !inFile {
		r.mu.Unlock()
		return fmt.Errorf("remove conference %q: %w", id, ErrNotFound)
	}
	if r.store != nil {
		st := r.store
		var api, file []Endpoint
		if a := r.api[id]; a != nil {
			api = slices.Clone(a.endpoints)
		}
		if inFile {
			for _, e := range f.endpoints {
				if !r.revoked[entryKey{conf: id, tlsID: e.TLSID, fp: e.Fingerprint}] {
					file = append(file, e)
				}
			}
		}
		r.mu.Unlock()
		if err := st.removeConference(id, api, file); err != nil {
			return fmt.Errorf("remove conference %q: %w", id, err)
		}
		return nil
	}
	delete(r.api, id)
	if inFile {
		for _, e := range f.endpoints {
			r.revoked[entryKey{conf: id, tlsID: e.TLSID, fp: e.Fingerprint}] = true
		}
	}
	subs := r.publish()
	r.mu.Unlock()
	notify(subs)
	return nil
}

// AddEndpoint registers an endpoint in conference conf through the API
// source, creating the conference (allow_legacy false) if needed. It
// returns the stored entry, with the KD tls-id to put in the SDP answer.
func (r *Registry) AddEndpoint(conf string, e Endpoint) (Endpoint, error) {
	if err := ValidateConferenceID(conf); err != nil {
		return Endpoint{}, fmt.Errorf("add endpoint: %w", err)
	}
	r.mu.Lock()
	snap := r.current()
	allowLegacy := false
	if c := snap.confs[conf]; c != nil {
		allowLegacy = c.AllowLegacy
	}
	if err := validateEndpoint(&e, allowLegacy); err != nil {
		r.mu.Unlock()
		return Endpoint{}, fmt.Errorf("add endpoint to %q: %w", conf, err)
	}
	k := entryKey{conf: conf, tlsID: e.TLSID, fp: e.Fingerprint}
	if e.TLSID != "" {
		if m, ok := snap.byTLSID[e.TLSID]; ok {
			r.mu.Unlock()
			return Endpoint{}, fmt.Errorf("add endpoint to %q: tls_id registered in %q: %w", conf, m.Conference, ErrDuplicate)
		}
	} else if snap.present[k] {
		r.mu.Unlock()
		return Endpoint{}, fmt.Errorf("add endpoint to %q: fingerprint registered: %w", conf, ErrDuplicate)
	}
	e.Source = "api"
	if e.KDTLSID == "" {
		e.KDTLSID = r.kdIDs[k]
		if e.KDTLSID == "" {
			e.KDTLSID = NewTLSID()
		}
	}
	if r.store != nil {
		st, newConf, addEntry := r.store, r.api[conf] == nil, !r.revoked[k] || !r.fileHas(k)
		r.mu.Unlock()
		if err := st.addEndpoint(conf, e, allowLegacy, newConf, addEntry); err != nil {
			return Endpoint{}, fmt.Errorf("add endpoint to %q: %w", conf, err)
		}
		out, ok := r.current().entry(k)
		if !ok {
			return Endpoint{}, fmt.Errorf("add endpoint to %q: not in the merged registry (a file entry with its tls-id?): %w", conf, ErrDuplicate)
		}
		return out, nil
	}
	c := r.api[conf]
	if c == nil {
		c = &confLayer{allowLegacy: allowLegacy}
		r.api[conf] = c
	}
	wasRevoked := r.revoked[k]
	delete(r.revoked, k)
	if !wasRevoked || !r.fileHas(k) {
		c.endpoints = append(c.endpoints, e)
	}
	subs := r.publish()
	out, _ := r.current().entry(k)
	r.mu.Unlock()
	notify(subs)
	return out, nil
}

func (r *Registry) fileHas(k entryKey) bool {
	c := r.file[k.conf]
	if c == nil {
		return false
	}
	return slices.ContainsFunc(c.endpoints, func(e Endpoint) bool { return e.TLSID == k.tlsID && e.Fingerprint == k.fp })
}

// RemoveEndpoint removes the endpoints of conference conf whose tls-id is
// tlsID (when not empty) and whose fingerprint is fp (when not nil). It
// returns how many were removed; live associations of those end.
func (r *Registry) RemoveEndpoint(conf, tlsID string, fp *Fingerprint) (int, error) {
	if tlsID == "" && fp == nil {
		return 0, fmt.Errorf("remove endpoint from %q: neither tls_id nor fingerprint given: %w", conf, ErrNotFound)
	}
	sel := func(e Endpoint) bool {
		return (tlsID == "" || e.TLSID == tlsID) && (fp == nil || e.Fingerprint == *fp)
	}
	r.mu.Lock()
	if r.store != nil {
		st := r.store
		var api, file []Endpoint
		if c := r.api[conf]; c != nil {
			for _, e := range c.endpoints {
				if sel(e) {
					api = append(api, e)
				}
			}
		}
		if c := r.file[conf]; c != nil {
			for _, e := range c.endpoints {
				if sel(e) && !r.revoked[entryKey{conf: conf, tlsID: e.TLSID, fp: e.Fingerprint}] {
					file = append(file, e)
				}
			}
		}
		r.mu.Unlock()
		if len(api)+len(file) == 0 {
			return 0, fmt.Errorf("remove endpoint from %q: %w", conf, ErrNotFound)
		}
		if err := st.removeEndpoints(conf, api, file); err != nil {
			return 0, fmt.Errorf("remove endpoint from %q: %w", conf, err)
		}
		return len(api) + len(file), nil
	}
	n := 0
	if c := r.api[conf]; c != nil {
		before := len(c.endpoints)
		c.endpoints = slices.DeleteFunc(c.endpoints, sel)
		n += before - len(c.endpoints)
	}
	if c := r.file[conf]; c != nil {
		for _, e := range c.endpoints {
			k := entryKey{conf: conf, tlsID: e.TLSID, fp: e.Fingerprint}
			if sel(e) && !r.revoked[k] {
				r.revoked[k] = true
				n++
			}
		}
	}
	if n == 0 {
		r.mu.Unlock()
		return 0, fmt.Errorf("remove endpoint from %q: %w", conf, ErrNotFound)
	}
	subs := r.publish()
	r.mu.Unlock()
	notify(subs)
	return n, nil
}

// Conferences returns the merged view, sorted by conference id.
func (r *Registry) Conferences() []Conference {
	s := r.current()
	out := make([]Conference, 0, len(s.confs))
	for _, c := range s.confs {
		cc := *c
		cc.Endpoints = slices.Clone(c.Endpoints)
		out = append(out, cc)
	}
	slices.SortFunc(out, func(a, b Conference) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Conference returns one conference of the merged view.
func (r *Registry) Conference(id string) (Conference, bool) {
	c := r.current().confs[id]
	if c == nil {
		return Conference{}, false
	}
	cc := *c
	cc.Endpoints = slices.Clone(c.Endpoints)
	return cc, true
}

// NumEndpoints returns the number of registered endpoints.
func (r *Registry) NumEndpoints() int { return r.current().numEndpoint }

func (s *snapshot) entry(k entryKey) (Endpoint, bool) {
	c := s.confs[k.conf]
	if c == nil {
		return Endpoint{}, false
	}
	for _, e := range c.Endpoints {
		if e.TLSID == k.tlsID && e.Fingerprint == k.fp {
			return e, true
		}
	}
	return Endpoint{}, false
}

// merge builds the snapshot from the layers. Called with r.mu held. A KD
// tls-id generated for an entry is kept as long as the entry exists.
func (r *Registry) merge() *snapshot {
	s := &snapshot{
		confs:      map[string]*Conference{},
		byTLSID:    map[string]Match{},
		legacyByFP: map[Fingerprint][]Match{},
		present:    map[entryKey]bool{},
	}
	ids := make([]string, 0, len(r.file)+len(r.api))
	for id := range r.file {
		ids = append(ids, id)
	}
	for id := range r.api {
		if _, dup := r.file[id]; !dup {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	kdIDs := make(map[entryKey]string, len(r.kdIDs))
	for _, id := range ids {
		f, a := r.file[id], r.api[id]
		c := &Conference{ID: id, Endpoints: []Endpoint{}}
		if f != nil {
			c.AllowLegacy = f.allowLegacy
		} else {
			c.AllowLegacy = a.allowLegacy
		}
		add := func(e Endpoint) {
			k := entryKey{conf: id, tlsID: e.TLSID, fp: e.Fingerprint}
			if r.revoked[k] || s.present[k] && e.Source == "api" {
				return
			}
			if e.TLSID == "" && !c.AllowLegacy {
				return
			}
			if e.TLSID != "" {
				if m, dup := s.byTLSID[e.TLSID]; dup {
					r.warn("registry: tls_id registered twice, keeping the first", "conference", id, "other_conference", m.Conference, "source", e.Source)
					return
				}
			}
			if e.KDTLSID == "" {
				e.KDTLSID = r.kdIDs[k]
				if e.KDTLSID == "" {
					e.KDTLSID = NewTLSID()
				}
			}
			kdIDs[k] = e.KDTLSID
			c.Endpoints = append(c.Endpoints, e)
			m := Match{Conference: id, Endpoint: e}
			s.present[k] = c.AllowLegacy
			if e.TLSID != "" {
				s.byTLSID[e.TLSID] = m
			}
			if c.AllowLegacy {
				s.legacyByFP[e.Fingerprint] = append(s.legacyByFP[e.Fingerprint], m)
				s.anyLegacy = true
			}
			s.numEndpoint++
		}
		if f != nil {
			for _, e := range f.endpoints {
				add(e)
			}
		}
		if a != nil {
			for _, e := range a.endpoints {
				add(e)
			}
		}
		s.confs[id] = c
	}
	r.kdIDs = kdIDs
	// Drop revocations of entries the file no longer has.
	for k := range r.revoked {
		if !r.fileHas(k) {
			delete(r.revoked, k)
		}
	}
	return s
}

// LegacyConferences returns the allow_legacy conferences in which
// fingerprint fp is registered for legacy matching. A legacy endpoint is
// matched by fingerprint alone, so one fingerprint in two of them matches
// neither (see lookupLegacy).
func (r *Registry) LegacyConferences(fp Fingerprint) []string {
	ms := r.current().legacyByFP[fp]
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Conference)
	}
	return out
}
