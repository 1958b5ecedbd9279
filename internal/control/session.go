package control

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/mdslow"
)

// Bounds of a session's fields (RFC 8839 section 5.4: ice-ufrag is 4..256
// ice-chars, ice-pwd 22..256).
const (
	maxSessionIDLen = 64
	minUfragLen     = 4
	maxICELen       = 256
)

// ErrConflict is wrapped by errors about an ICE ufrag or tls-id that
// another session holds.
var ErrConflict = errors.New("control: held by another session")

// Session is what the signalling layer (the KD's join endpoint) tells the
// MD about one endpoint: its conference, its tls-id if it sent one, the
// MD's ICE-lite credentials for it and the endpoint's own ufrag.
type Session struct {
	ID          string `json:"id"`
	Conference  string `json:"conference"`
	TLSID       string `json:"tls_id,omitempty"`
	ICEUfrag    string `json:"ice_ufrag"`
	ICEPwd      string `json:"ice_pwd,omitempty"`
	RemoteUfrag string `json:"remote_ufrag,omitempty"`
}

// iceChar reports whether c is an ice-char (RFC 8839: ALPHA / DIGIT /
// "+" / "/").
func iceChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

func checkICE(what, s string, minLen int) error {
	if len(s) < minLen || len(s) > maxICELen {
		return fmt.Errorf("%w: %s must be %d..%d characters", ErrInvalid, what, minLen, maxICELen)
	}
	for i := 0; i < len(s); i++ {
		if !iceChar(s[i]) {
			return fmt.Errorf("%w: %s must hold only ice-chars (A-Z a-z 0-9 + /)", ErrInvalid, what)
		}
	}
	return nil
}

// CheckSessionID validates a session ID: 1..64 characters of
// [A-Za-z0-9_-].
func CheckSessionID(id string) error {
	if id == "" || len(id) > maxSessionIDLen {
		return fmt.Errorf("%w: session id must be 1..%d characters", ErrInvalid, maxSessionIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: session id must hold only [A-Za-z0-9_-]", ErrInvalid)
		}
	}
	return nil
}

// Validate checks every field of s.
func (s *Session) Validate() error {
	if err := CheckSessionID(s.ID); err != nil {
		return err
	}
	if err := checkName("conference", s.Conference); err != nil {
		return err
	}
	if s.TLSID != "" {
		if err := checkName("tls_id", s.TLSID); err != nil {
			return err
		}
	}
	if err := checkICE("ice_ufrag", s.ICEUfrag, minUfragLen); err != nil {
		return err
	}
	if err := checkICE("ice_pwd", s.ICEPwd, MinICEPasswordLen); err != nil {
		return err
	}
	if s.RemoteUfrag != "" {
		if err := checkICE("remote_ufrag", s.RemoteUfrag, minUfragLen); err != nil {
			return err
		}
	}
	return nil
}

// PutSession creates session s or replaces the one with its ID (an ICE
// restart when the credentials change: the old ufrag stops authenticating
// at once). It reports whether the session is new. Nothing changes on
// error: ErrInvalid (a bad field), ErrConflict (the ufrag or tls-id is
// another session's, or the ufrag is a configured one), ErrFull.
func (m *Membership) PutSession(s Session) (created bool, err error) {
	if err := s.Validate(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.sessions[s.ID]
	if o := m.byUfrag[s.ICEUfrag]; o != nil && o != old {
		return false, fmt.Errorf("%w: ice_ufrag %q belongs to session %q", ErrConflict, s.ICEUfrag, o.ID)
	}
	if _, ok := m.ice[s.ICEUfrag]; ok {
		return false, fmt.Errorf("%w: ice_ufrag %q is a configured ICE ufrag", ErrConflict, s.ICEUfrag)
	}
	if s.TLSID != "" {
		if o := m.sessByTLSID[s.TLSID]; o != nil && o != old {
			return false, fmt.Errorf("%w: tls_id belongs to session %q", ErrConflict, o.ID)
		}
	}
	if old == nil && m.full() {
		return false, ErrFull
	}
	if old != nil {
		delete(m.byUfrag, old.ICEUfrag)
		if old.TLSID != "" {
			delete(m.sessByTLSID, old.TLSID)
		}
	}
	n := s
	m.intern(n.Conference)
	m.sessions[n.ID] = &n
	m.byUfrag[n.ICEUfrag] = &n
	if n.TLSID != "" {
		m.sessByTLSID[n.TLSID] = &n
	}
	return old == nil, nil
}

// DeleteSession removes session id; it reports whether there was one.
func (m *Membership) DeleteSession(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[id]
	if s == nil {
		return false
	}
	delete(m.sessions, id)
	delete(m.byUfrag, s.ICEUfrag)
	if s.TLSID != "" {
		delete(m.sessByTLSID, s.TLSID)
	}
	return true
}

// Sessions lists the sessions sorted by ID, without their passwords.
func (m *Membership) Sessions() []Session {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		c := *s
		c.ICEPwd = ""
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ICECredential implements mdslow.Credentials: a session's ufrag first,
// then the configured ones (which belong to no session).
func (m *Membership) ICECredential(ufrag string) (mdslow.ICECredential, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s := m.byUfrag[ufrag]; s != nil {
		return mdslow.ICECredential{Pwd: s.ICEPwd, Session: s.ID, Remote: s.RemoteUfrag}, true
	}
	p, ok := m.ice[ufrag]
	return mdslow.ICECredential{Pwd: p}, ok
}

// Place implements mdslow.Membership. The order: the tls-id mapping, the
// session whose tls_id is tlsID, the session checked (whose ICE check the
// endpoint's address passed), the ip:port mapping, the ip mapping, the
// single conference. session is the session of the endpoint: the one
// whose tls_id it sent, else checked if that session exists.
func (m *Membership) Place(tlsID string, addr netip.AddrPort, checked string) (conf keytable.ConferenceID, session string, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var bySess *Session
	if tlsID != "" {
		bySess = m.sessByTLSID[tlsID]
	}
	if bySess == nil && checked != "" {
		bySess = m.sessions[checked]
	}
	if bySess != nil {
		session = bySess.ID
	}
	name := m.single
	if n, ok := m.tlsIDs[tlsID]; ok && tlsID != "" {
		name = n
	} else if bySess != nil {
		name = bySess.Conference
	} else if n, ok := m.addrs[netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())]; ok {
		name = n
	} else if n, ok := m.ips[addr.Addr().Unmap()]; ok {
		name = n
	}
	if name == "" {
		return 0, session, false
	}
	return m.ids[name], session, true
}
