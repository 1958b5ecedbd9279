package mdslow

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/slowpkt"
)

// ICE sessions: what the relay does with a check that a session's
// credentials authenticated (AnswerSTUN reports the session).
//
//   - Placement: the check marks its source address as the session's for
//     CheckedTTL; a DTLS association that starts from that address is
//     placed in the session's conference (Membership.Place) and, when its
//     keys arrive, bound to the session.
//   - Mobility (RFC 8445 section 7.3.1.5, ICE lite): a nominating check
//     (USE-CANDIDATE) from an address other than the bound association's
//     moves the association there: the key table's SetAddr (atomic for the
//     workers, the receive state handed over by the data plane when the
//     flow lands on another worker), then the relay's address index. At
//     most one move per session per MinMoveInterval. A check without
//     USE-CANDIDATE from elsewhere is answered and moves nothing, except
//     after a NAT rebinding: the endpoint's agent does not know its
//     address changed, so it keeps checking its selected pair without
//     nominating again, and its checks now come from the new mapping.
//     RebindChecks consecutive checks from one new address, with none
//     from the association's address in between and none from there for
//     RebindQuiet, move it as a nominating check would (counted as a
//     move and as a rebinding). Each of those checks passed
//     MESSAGE-INTEGRITY with a fresh transaction ID, so an on-path
//     attacker cannot do it with captured checks while the endpoint's own
//     keep coming from its address.
//   - Consent (RFC 7675, the ICE-lite side): a check from the bound
//     association's own address is consent; without one for
//     Limits.ConsentTimeout the association stops receiving media
//     (keytable.Table.SetConsent) until one comes.
//   - Replay: a check is acted on once. A transaction ID the session used
//     among its last replayWindow checks is answered (it may be a
//     retransmission) but neither moves nor refreshes consent, so a check
//     captured on the path cannot be replayed from elsewhere to pull the
//     media to another address.
//
// The MD never acts on media packets for any of this: a media packet can
// be replayed from anywhere, a check names the session's credentials.

// CheckedTTL is how long an authenticated check places the DTLS
// association that starts from its source address.
const CheckedTTL = 30 * time.Second

// MinMoveInterval is the shortest time between two moves of one session's
// association.
const MinMoveInterval = 100 * time.Millisecond

// A NAT rebinding (see above) moves an association after RebindChecks
// consecutive checks from one new address, its own address silent for
// RebindQuiet: longer than agents leave between checks of the selected
// pair (RFC 7675 consent checks every 4-6 s; browsers and pion check it
// every 2-2.5 s), so a check of a backup pair does not move it.
const (
	RebindChecks = 2
	RebindQuiet  = 2 * time.Second
)

const (
	// replayWindow is the number of a session's latest transaction IDs
	// kept (12 octets each).
	replayWindow = 128
	// maxCheckedPerSession bounds the addresses one session marks.
	maxCheckedPerSession = 8
)

// session is the relay's ICE state of one session. Owned by Run.
type session struct {
	id    string
	bound *association // established association bound to it, or nil

	// txids is a ring of the latest transaction IDs acted on.
	txids [replayWindow][12]byte
	ntx   int

	addrs     []netip.AddrPort // the addresses it marked in Relay.checked, oldest first
	lastCheck time.Time

	consentAt time.Time // last consent (a check from bound's address)
	noConsent bool      // bound stopped receiving for want of consent
	lastMove  time.Time
	moves     uint64

	rebindFrom netip.AddrPort // where the latest checks from elsewhere came from
	rebindN    int            // how many in a row
}

// checkMark says which session's check passed from an address, and when.
type checkMark struct {
	session string
	at      time.Time
}

// seen reports whether the session used txid among its latest checks, and
// records it if not.
func (s *session) seen(txid [12]byte) bool {
	n := min(s.ntx, replayWindow)
	for i := range n {
		if s.txids[i] == txid {
			return true
		}
	}
	s.txids[s.ntx%replayWindow] = txid
	s.ntx++
	return false
}

// sessionState returns the state of session id, creating it.
func (r *Relay) sessionState(id string) *session {
	s := r.sessions[id]
	if s == nil {
		s = &session{id: id}
		r.sessions[id] = s
	}
	return s
}

// checkedSession returns the session whose check passed from addr within
// CheckedTTL, or "".
func (r *Relay) checkedSession(addr netip.AddrPort, now time.Time) string {
	if m, ok := r.checked[addr]; ok && now.Sub(m.at) <= CheckedTTL {
		return m.session
	}
	return ""
}

// mark records that a check of s passed from addr.
func (r *Relay) mark(s *session, addr netip.AddrPort, now time.Time) {
	r.checked[addr] = checkMark{session: s.id, at: now}
	for i, a := range s.addrs {
		if a == addr {
			s.addrs = append(s.addrs[:i], s.addrs[i+1:]...)
			break
		}
	}
	if len(s.addrs) >= maxCheckedPerSession {
		old := s.addrs[0]
		s.addrs = s.addrs[1:]
		if r.checked[old].session == s.id {
			delete(r.checked, old)
		}
	}
	s.addrs = append(s.addrs, addr)
}

// unmark forgets the addresses s marked.
func (r *Relay) unmark(s *session) {
	for _, a := range s.addrs {
		if r.checked[a].session == s.id {
			delete(r.checked, a)
		}
	}
	s.addrs = nil
}

// onCheck acts on a check that session chk.Session's credentials
// authenticated, from p.From.
func (r *Relay) onCheck(p slowpkt.Packet, chk STUNCheck) {
	now := r.now()
	s := r.sessionState(chk.Session)
	if s.seen(chk.TransactionID) {
		r.c.stunReplayed.Add(1)
		return
	}
	s.lastCheck = now
	r.mark(s, p.From, now)
	a := s.bound
	if a == nil {
		return
	}
	if p.From == a.addr {
		s.rebindN = 0
		r.consent(s, now)
		return
	}
	rebind := false
	if !chk.UseCandidate {
		if p.From != s.rebindFrom {
			s.rebindFrom, s.rebindN = p.From, 0
		}
		s.rebindN++
		if s.rebindN < RebindChecks || now.Sub(s.consentAt) < RebindQuiet {
			return
		}
		rebind = true
	}
	if !s.lastMove.IsZero() && now.Sub(s.lastMove) < MinMoveInterval {
		r.c.movesRateLimited.Add(1)
		return
	}
	if r.move(s, a, p, now) && rebind {
		r.c.rebinds.Add(1)
	}
}

// move moves association a of session s to p.From, where a nominating
// check of s (or the checks of a rebinding) came from, and reports whether
// it did.
func (r *Relay) move(s *session, a *association, p slowpkt.Packet, now time.Time) bool {
	to := p.From
	if o := r.byAddr[to]; o != nil && o != a {
		r.c.movesRefused.Add(1)
		r.rl.Log(slog.LevelWarn, "move refused", "endpoint not moved: another association uses the address",
			"session", s.id, "association", a.id, "to", to, "other", o.id)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), tableOpTimeout)
	_, err := r.cfg.Table.SetAddr(ctx, a.id, to)
	cancel()
	if err != nil && !errors.Is(err, keytable.ErrGraceTimeout) {
		r.c.movesRefused.Add(1)
		r.rl.Log(slog.LevelWarn, "move refused", "endpoint not moved: key table", "session", s.id, "association", a.id, "to", to, "err", err)
		return false
	}
	if n := a.next; n != nil {
		// A DTLS restart negotiating at the old address: it cannot get
		// that address any more.
		r.end(n, true, "its endpoint moved")
	}
	from := a.addr
	if r.byAddr[from] == a {
		r.delAddr(from)
	}
	sameIP := from.Addr() == to.Addr()
	if !sameIP {
		r.setInTable(a, false)
	}
	a.addr, a.port = to, p.To.Port()
	if !sameIP {
		r.setInTable(a, true)
	}
	r.setAddr(to, a)
	s.lastMove = now
	s.moves++
	s.rebindN = 0
	r.c.moves.Add(1)
	r.consent(s, now)
	r.rl.Log(slog.LevelInfo, "moved", "endpoint moved on an ICE check", "session", s.id, "association", a.id, "from", from, "to", to)
	return true
}

// consent records consent for s's bound association and gives media back
// to it if it had lost it.
func (r *Relay) consent(s *session, now time.Time) {
	s.consentAt = now
	if !s.noConsent || s.bound == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tableOpTimeout)
	_, err := r.cfg.Table.SetConsent(ctx, s.bound.id, true)
	cancel()
	if err != nil && !errors.Is(err, keytable.ErrGraceTimeout) {
		r.rl.Log(slog.LevelWarn, "consent", "consent restored: key table", "session", s.id, "association", s.bound.id, "err", err)
		return
	}
	s.noConsent = false
	r.c.consentRestored.Add(1)
	r.rl.Log(slog.LevelInfo, "consent restored", "consent restored: media resumes", "session", s.id, "association", s.bound.id)
}

// bind binds association a, whose keys were just installed, to session
// sid ("" for none). An association the session had before ends: one
// session is one endpoint.
func (r *Relay) bind(a *association, sid string) {
	if sid == "" || a.sess != nil && a.sess.id == sid {
		return
	}
	if a.sess != nil && a.sess.bound == a {
		a.sess.bound = nil
	}
	s := r.sessionState(sid)
	if old := s.bound; old != nil && old != a {
		r.c.replaced.Add(1)
		r.end(old, true, "replaced by its session's new association")
	}
	s.bound, a.sess = a, s
	s.consentAt, s.noConsent = r.now(), false
}

// checkConsent takes media away from the bound associations whose
// consent expired.
func (r *Relay) checkConsent(now time.Time) {
	timeout := r.limits.Load().ConsentTimeout
	for _, s := range r.sessions {
		a := s.bound
		if a == nil || s.noConsent || now.Sub(s.consentAt) <= timeout {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), tableOpTimeout)
		_, err := r.cfg.Table.SetConsent(ctx, a.id, false)
		cancel()
		if err != nil && !errors.Is(err, keytable.ErrGraceTimeout) {
			r.rl.Log(slog.LevelWarn, "consent", "consent expiry: key table", "session", s.id, "association", a.id, "err", err)
			continue
		}
		s.noConsent = true
		r.c.consentExpired.Add(1)
		r.rl.Log(slog.LevelInfo, "consent expired", "consent expired: no ICE check from the endpoint's address, media to it stopped",
			"session", s.id, "association", a.id, "addr", a.addr, "timeout", timeout)
	}
}

// consentTick is how often consent is checked: often enough that an
// expiry lands within an eighth of the timeout (at most a second late).
func consentTick(timeout time.Duration) time.Duration {
	return min(max(timeout/8, 50*time.Millisecond), time.Second)
}

// sweepSessions forgets stale address marks and the state of sessions
// that have no association and sent no check for CheckedTTL.
func (r *Relay) sweepSessions(now time.Time) {
	for addr, m := range r.checked {
		if now.Sub(m.at) > CheckedTTL {
			delete(r.checked, addr)
		}
	}
	for id, s := range r.sessions {
		if s.bound == nil && now.Sub(s.lastCheck) > CheckedTTL {
			r.unmark(s)
			delete(r.sessions, id)
		}
	}
}

// SessionInfo is the relay's state of one session (for the control API).
type SessionInfo struct {
	ID string
	// Association is the association bound to it (uuid.Nil for none).
	Association uuid.UUID
	// Addr is that association's current address.
	Addr netip.AddrPort
	// Consent reports whether that association receives media.
	Consent bool
	// Moves counts its moves to a new address.
	Moves uint64
}

// Sessions lists the sessions the relay holds state for (a check passed or
// an association is bound), sorted by ID.
func (r *Relay) Sessions(ctx context.Context) ([]SessionInfo, error) {
	var out []SessionInfo
	err := r.do(ctx, func() {
		for _, s := range r.sessions {
			in := SessionInfo{ID: s.id, Moves: s.moves}
			if a := s.bound; a != nil {
				in.Association, in.Addr, in.Consent = a.id, a.addr, !s.noConsent
			}
			out = append(out, in)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// EndSession forgets session id: its association, if any, ends
// (EndpointDisconnect to the KD, as Disconnect) and the addresses its
// checks marked place nothing more. It reports whether an association
// ended.
func (r *Relay) EndSession(ctx context.Context, id string) (bool, error) {
	ended := false
	err := r.do(ctx, func() {
		s := r.sessions[id]
		if s == nil {
			return
		}
		if a := s.bound; a != nil {
			ended = true
			r.end(a, true, "session deleted")
		}
		r.unmark(s)
		delete(r.sessions, id)
	})
	return ended, err
}
