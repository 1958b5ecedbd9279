package control

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/mdfast/mdfast/internal/keytable"
)

// MinICEPasswordLen is the shortest ICE password accepted (RFC 8445
// section 5.3: at least 128 bits of randomness, 22 characters).
const MinICEPasswordLen = 22

// Limits of the names the API accepts.
const (
	maxNameLen = 255
	maxEntries = 1 << 20
)

// ErrInvalid is wrapped by errors about a bad name, address or password.
var ErrInvalid = errors.New("control: invalid argument")

// ErrFull is returned when a table of the membership is full.
var ErrFull = errors.New("control: too many entries")

// Mappings is the membership state: tls-ids and addresses to conference
// names, and ICE credentials (ufrag to password).
type Mappings struct {
	TLSIDs map[string]string `json:"tls_ids" yaml:"tls-ids"`
	// Addrs maps "ip" or "ip:port" to a conference.
	Addrs map[string]string `json:"addrs" yaml:"addrs"`
	// ICE maps the MD's ICE ufrag to its password.
	ICE map[string]string `json:"-" yaml:"ice"`
}

// Membership maps endpoints to conferences and holds the ICE credentials.
// Conference names are interned into key table conference IDs, stable for
// the life of the process. An endpoint no mapping places is in no
// conference (the slow path refuses it) unless the Membership runs in
// single-conference mode, which the operator must ask for by naming that
// conference. Safe for concurrent use.
type Membership struct {
	mu     sync.RWMutex
	ids    map[string]keytable.ConferenceID
	names  map[keytable.ConferenceID]string
	tlsIDs map[string]string
	addrs  map[netip.AddrPort]string
	ips    map[netip.Addr]string
	ice    map[string]string
	single string // "" unless in single-conference mode

	// Sessions (session.go), set through the control API only: a
	// configuration reload leaves them alone.
	sessions    map[string]*Session
	byUfrag     map[string]*Session
	sessByTLSID map[string]*Session
}

// NewMembership returns an empty Membership. With single empty, an
// endpoint no mapping places is in no conference; otherwise it is in the
// conference named single (single-conference mode). A single name that is
// not a valid conference name (longer than 255 octets) is an error.
func NewMembership(single string) (*Membership, error) {
	if len(single) > maxNameLen {
		return nil, fmt.Errorf("%w: single conference must be 1..%d octets", ErrInvalid, maxNameLen)
	}
	m := &Membership{
		ids: map[string]keytable.ConferenceID{}, names: map[keytable.ConferenceID]string{},
		tlsIDs: map[string]string{}, addrs: map[netip.AddrPort]string{}, ips: map[netip.Addr]string{},
		ice: map[string]string{}, single: single,
		sessions: map[string]*Session{}, byUfrag: map[string]*Session{}, sessByTLSID: map[string]*Session{},
	}
	if single != "" {
		m.intern(single)
	}
	return m, nil
}

// Single returns the conference of single-conference mode ("" when off).
func (m *Membership) Single() string { return m.single }

func (m *Membership) intern(name string) keytable.ConferenceID {
	if id, ok := m.ids[name]; ok {
		return id
	}
	id := keytable.ConferenceID(len(m.ids) + 1)
	m.ids[name], m.names[id] = id, name
	return id
}

// Conference is Place without a checked session: the tls-id mapping wins,
// then a session's tls_id, then the ip:port mapping, then the ip mapping,
// then the single conference in single-conference mode; ok is false when
// none places the endpoint.
func (m *Membership) Conference(tlsID string, addr netip.AddrPort) (id keytable.ConferenceID, ok bool) {
	id, _, ok = m.Place(tlsID, addr, "")
	return id, ok
}

// ConferenceName returns the name of conference id.
func (m *Membership) ConferenceName(id keytable.ConferenceID) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.names[id]
}

func checkName(what, s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("%w: %s must be 1..%d octets", ErrInvalid, what, maxNameLen)
	}
	return nil
}

// parseAddr parses "ip" or "ip:port".
func parseAddr(s string) (netip.AddrPort, netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, netip.Addr{}, fmt.Errorf("%w: address %q is neither ip nor ip:port", ErrInvalid, s)
	}
	return netip.AddrPort{}, a.Unmap(), nil
}

func (m *Membership) full() bool {
	return len(m.tlsIDs)+len(m.addrs)+len(m.ips)+len(m.ice)+len(m.sessions) >= maxEntries || len(m.ids) >= maxEntries
}

// MapTLSID puts the endpoint whose ClientHello carries tlsID in conference.
func (m *Membership) MapTLSID(tlsID, conference string) error {
	if err := checkName("tls-id", tlsID); err != nil {
		return err
	}
	if err := checkName("conference", conference); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.full() {
		return ErrFull
	}
	m.intern(conference)
	m.tlsIDs[tlsID] = conference
	return nil
}

// UnmapTLSID removes a tls-id mapping; it reports whether there was one.
func (m *Membership) UnmapTLSID(tlsID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.tlsIDs[tlsID]
	delete(m.tlsIDs, tlsID)
	return ok
}

// MapAddr puts the endpoint at addr ("ip" or "ip:port") in conference.
func (m *Membership) MapAddr(addr, conference string) error {
	ap, ip, err := parseAddr(addr)
	if err != nil {
		return err
	}
	if err := checkName("conference", conference); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.full() {
		return ErrFull
	}
	m.intern(conference)
	if ap.IsValid() {
		m.addrs[ap] = conference
	} else {
		m.ips[ip] = conference
	}
	return nil
}

// UnmapAddr removes an address mapping; it reports whether there was one.
func (m *Membership) UnmapAddr(addr string) (bool, error) {
	ap, ip, err := parseAddr(addr)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var ok bool
	if ap.IsValid() {
		_, ok = m.addrs[ap]
		delete(m.addrs, ap)
	} else {
		_, ok = m.ips[ip]
		delete(m.ips, ip)
	}
	return ok, nil
}

// SetICE sets the password of the MD's ICE ufrag.
func (m *Membership) SetICE(ufrag, pwd string) error {
	if err := checkName("ufrag", ufrag); err != nil {
		return err
	}
	for _, c := range ufrag {
		if c == ':' {
			return fmt.Errorf("%w: ufrag must not contain ':'", ErrInvalid)
		}
	}
	if len(pwd) < MinICEPasswordLen || len(pwd) > 256 {
		return fmt.Errorf("%w: ICE password must be %d..256 characters", ErrInvalid, MinICEPasswordLen)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.byUfrag[ufrag]; s != nil {
		return fmt.Errorf("%w: ufrag %q belongs to session %q", ErrConflict, ufrag, s.ID)
	}
	if m.full() {
		return ErrFull
	}
	m.ice[ufrag] = pwd
	return nil
}

// DeleteICE removes an ICE ufrag; it reports whether there was one.
func (m *Membership) DeleteICE(ufrag string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.ice[ufrag]
	delete(m.ice, ufrag)
	return ok
}

// Snapshot returns the current mappings (ICE passwords included).
func (m *Membership) Snapshot() Mappings {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := Mappings{TLSIDs: map[string]string{}, Addrs: map[string]string{}, ICE: map[string]string{}}
	for k, v := range m.tlsIDs {
		out.TLSIDs[k] = v
	}
	for k, v := range m.addrs {
		out.Addrs[k.String()] = v
	}
	for k, v := range m.ips {
		out.Addrs[k.String()] = v
	}
	for k, v := range m.ice {
		out.ICE[k] = v
	}
	return out
}

// ICEUfrags lists the configured ufrags, sorted.
func (m *Membership) ICEUfrags() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.ice))
	for k := range m.ice {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Replace validates mp and replaces every mapping and credential with it
// (a configuration reload). On error nothing changes.
func (m *Membership) Replace(mp Mappings) error {
	n, err := NewMembership(m.single)
	if err != nil {
		return err
	}
	for k, v := range mp.TLSIDs {
		if err := n.MapTLSID(k, v); err != nil {
			return fmt.Errorf("tls-id %q: %w", k, err)
		}
	}
	for k, v := range mp.Addrs {
		if err := n.MapAddr(k, v); err != nil {
			return fmt.Errorf("address %q: %w", k, err)
		}
	}
	for k, v := range mp.ICE {
		if err := n.SetICE(k, v); err != nil {
			return fmt.Errorf("ICE ufrag %q: %w", k, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range n.ice {
		if s := m.byUfrag[k]; s != nil {
			return fmt.Errorf("ICE ufrag %q: %w: session %q", k, ErrConflict, s.ID)
		}
	}
	// Keep the interned IDs stable: intern the new names into m.
	for name := range n.ids {
		m.intern(name)
	}
	m.tlsIDs, m.addrs, m.ips, m.ice = n.tlsIDs, n.addrs, n.ips, n.ice
	return nil
}
