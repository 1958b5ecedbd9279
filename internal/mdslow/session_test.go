package mdslow

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/keytable"
)

const (
	sessPwd  = "session-password-0123456789"
	sessUser = "mdsess1:epsess1"
)

// sessionEnv is an env with session "s1" (conference 3, ufrag mdsess1,
// remote ufrag epsess1) and no other mapping: only the session's check
// places an endpoint.
func sessionEnv(t *testing.T, lim Limits) (*env, *mapMembership) {
	t.Helper()
	m := newMapMembership()
	m.sessions["s1"] = 3
	c := sessCreds{"mdsess1": {Pwd: sessPwd, Session: "s1", Remote: "epsess1"}}
	return newEnvCreds(t, lim, m, c), m
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	*e.now = e.now.Add(d)
	e.mu.Unlock()
}

// checkFrom sends an ICE check from addr and returns whether it was
// answered with a success response.
func (e *env) checkFrom(t *testing.T, addr string, user, pwd string, tx byte, nominate bool) bool {
	t.Helper()
	e.snd.take()
	e.send(t, addr, check(user, pwd, [12]byte{tx, 0xAA}, nominate))
	dst, data := e.snd.take()
	if len(dst) != 1 || dst[0].String() != addr {
		return false
	}
	m, err := ParseSTUN(data[0])
	return err == nil && m.Type == stunBindingSuccess
}

// establishViaSession runs a check from ep, then a DTLS handshake from ep
// with no tls-id, and installs its keys.
func (e *env) establishViaSession(t *testing.T, ep string) uuid.UUID {
	t.Helper()
	if !e.checkFrom(t, ep, sessUser, sessPwd, 1, true) {
		t.Fatal("check not answered")
	}
	e.join(t, ep, "", 1)
	l, _ := e.r.Associations(context.Background())
	if len(l) != 1 {
		t.Fatalf("associations %+v (refused: %v)", l, e.r.Stats().Refused)
	}
	e.r.HandleMediaKeys(keys(l[0].ID))
	e.sync(t)
	return l[0].ID
}

func (e *env) sessions(t *testing.T) map[string]SessionInfo {
	t.Helper()
	l, err := e.r.Sessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]SessionInfo{}
	for _, s := range l {
		out[s.ID] = s
	}
	return out
}

func TestSessionPlacementAndBinding(t *testing.T) {
	e, _ := sessionEnv(t, Limits{})
	ep := "198.18.0.11:4000"
	// Without a check nothing places the endpoint.
	e.join(t, "198.18.0.12:4000", "", 1)
	if s := e.r.Stats(); s.Refused[RefusedNoMapping] != 1 {
		t.Fatalf("an unchecked endpoint was not refused: %+v", s.Refused)
	}
	// A check with bad integrity places nothing either.
	if e.checkFrom(t, "198.18.0.13:4000", sessUser, sessPwd+"x", 1, true) {
		t.Fatal("bad integrity answered")
	}
	e.join(t, "198.18.0.13:4000", "", 1)
	if s := e.r.Stats(); s.Refused[RefusedNoMapping] != 2 {
		t.Fatalf("an endpoint whose check failed was not refused: %+v", s.Refused)
	}
	id := e.establishViaSession(t, ep)
	got, ok := e.table.Get(id)
	if !ok || got.Conference() != 3 || got.Addr().String() != ep {
		t.Fatalf("table entry %v %v", got, ok)
	}
	s := e.sessions(t)["s1"]
	if s.Association != id || s.Addr.String() != ep || !s.Consent || s.Moves != 0 {
		t.Fatalf("session %+v", s)
	}
	// The mark expires: a check older than CheckedTTL places nothing.
	e.advance(CheckedTTL + time.Second)
	e.join(t, "198.18.0.11:4002", "", 1)
	if s := e.r.Stats(); s.Refused[RefusedNoMapping] != 3 {
		t.Fatalf("a stale check placed an endpoint: %+v", s.Refused)
	}
	// EndSession ends the bound association and tells the KD.
	ended, err := e.r.EndSession(context.Background(), "s1")
	if err != nil || !ended {
		t.Fatalf("EndSession = %v %v", ended, err)
	}
	if _, ok := e.table.Get(id); ok {
		t.Fatal("the session's association is still installed")
	}
	if d := e.tun.disc; len(d) == 0 || d[len(d)-1] != id {
		t.Fatalf("disconnects %v", d)
	}
	if len(e.sessions(t)) != 0 {
		t.Fatal("session state kept")
	}
}

func TestSessionMove(t *testing.T) {
	e, _ := sessionEnv(t, Limits{})
	ep, newEP := "198.18.0.11:4000", "198.18.0.11:4100"
	id := e.establishViaSession(t, ep)
	at := func() string {
		t.Helper()
		got, ok := e.table.Get(id)
		if !ok {
			t.Fatal("association gone")
		}
		return got.Addr().String()
	}
	// A check from elsewhere without USE-CANDIDATE is answered, moves nothing.
	if !e.checkFrom(t, newEP, sessUser, sessPwd, 2, false) || at() != ep {
		t.Fatalf("moved without USE-CANDIDATE to %s", at())
	}
	// Bad integrity with USE-CANDIDATE: rejected, nothing moves.
	if e.checkFrom(t, newEP, sessUser, "wrong-password-0123456789", 3, true) || at() != ep {
		t.Fatalf("moved on bad integrity to %s", at())
	}
	// Another session's remote ufrag: rejected.
	if e.checkFrom(t, newEP, "mdsess1:someoneelse", sessPwd, 4, true) || at() != ep {
		t.Fatalf("moved on a wrong remote ufrag to %s", at())
	}
	// A replayed transaction ID (the one that placed it) moves nothing.
	if !e.checkFrom(t, newEP, sessUser, sessPwd, 1, true) || at() != ep {
		t.Fatalf("moved on a replayed check to %s", at())
	}
	if s := e.r.Stats(); s.STUNReplayed != 1 || s.Moves != 0 {
		t.Fatalf("stats %+v", s)
	}
	// A nominating check moves it: table, relay index, listing, counter.
	e.advance(time.Second)
	if !e.checkFrom(t, newEP, sessUser, sessPwd, 5, true) || at() != newEP {
		t.Fatalf("not moved: at %s", at())
	}
	if s := e.r.Stats(); s.Moves != 1 {
		t.Fatalf("moves %d", s.Moves)
	}
	if s := e.sessions(t)["s1"]; s.Addr.String() != newEP || s.Moves != 1 || !s.Consent {
		t.Fatalf("session %+v", s)
	}
	l, _ := e.r.Associations(context.Background())
	if len(l) != 1 || l[0].Addr.String() != newEP {
		t.Fatalf("associations %+v", l)
	}
	// DTLS from the old address finds no association; from the new one it
	// goes to the KD.
	before := e.r.Stats()
	e.send(t, ep, alert(1, 0))
	e.send(t, newEP, alert(1, 0))
	after := e.r.Stats()
	if after.DropNoAssociation != before.DropNoAssociation+1 || after.DTLSToKD != before.DTLSToKD+1 {
		t.Fatalf("DTLS after the move: %+v", after)
	}
	// KD's DTLS goes to the new address.
	e.r.HandleTunneledDtls(id, []byte{22, 0xFE, 0xFD})
	e.sync(t)
	if dst, _ := e.snd.take(); len(dst) != 1 || dst[0].String() != newEP {
		t.Fatalf("KD DTLS to %v", dst)
	}
	// At most one move per MinMoveInterval.
	third := "198.18.0.14:4200"
	if !e.checkFrom(t, third, sessUser, sessPwd, 6, true) || at() != newEP {
		t.Fatalf("moved twice within MinMoveInterval: %s", at())
	}
	if s := e.r.Stats(); s.MovesRateLimited != 1 {
		t.Fatalf("rate-limited moves %d", s.MovesRateLimited)
	}
	// Another IP: the next hops follow.
	e.advance(MinMoveInterval)
	e.nb.take()
	if !e.checkFrom(t, third, sessUser, sessPwd, 7, true) || at() != third {
		t.Fatalf("not moved to %s: %s", third, at())
	}
	if c := e.nb.take(); len(c) != 2 || c[0] != "forget 198.18.0.11" || c[1] != "resolve 198.18.0.14" {
		t.Fatalf("next-hop calls %v", c)
	}
	// A move onto another association's address is refused.
	e.advance(time.Second)
	other := "198.18.0.21:5000"
	e.r.cfg.Membership.(*mapMembership).ips[netip.MustParseAddr("198.18.0.21")] = 3
	e.join(t, other, "", 1)
	if !e.checkFrom(t, other, sessUser, sessPwd, 9, true) || at() != third {
		t.Fatalf("moved onto another association's address: %s", at())
	}
	if s := e.r.Stats(); s.MovesRefused != 1 {
		t.Fatalf("refused moves %d", s.MovesRefused)
	}
}

func TestSessionConsent(t *testing.T) {
	e, _ := sessionEnv(t, Limits{ConsentTimeout: 5 * time.Second})
	ep := "198.18.0.11:4000"
	id := e.establishViaSession(t, ep)
	// A second, unbound member of the conference (placed by address) is
	// not subject to consent.
	e.r.cfg.Membership.(*mapMembership).ips[netip.MustParseAddr("198.18.0.30")] = 3
	e.join(t, "198.18.0.30:6000", "", 1)
	var other uuid.UUID
	l, _ := e.r.Associations(context.Background())
	for _, a := range l {
		if a.ID != id {
			other = a.ID
		}
	}
	e.r.HandleMediaKeys(keys(other))
	e.sync(t)
	consent := func() (bool, bool) {
		t.Helper()
		if err := e.r.do(context.Background(), func() { e.r.checkConsent(e.r.now()) }); err != nil {
			t.Fatal(err)
		}
		a, ok1 := e.table.Get(id)
		b, ok2 := e.table.Get(other)
		if !ok1 || !ok2 {
			t.Fatal("association gone")
		}
		return a.Consent(), b.Consent()
	}
	// Checks from its address keep consent.
	for i := range 3 {
		e.advance(4 * time.Second)
		if !e.checkFrom(t, ep, sessUser, sessPwd, byte(10+i), false) {
			t.Fatal("consent check not answered")
		}
		if c, _ := consent(); !c {
			t.Fatalf("consent lost after %d fresh checks", i+1)
		}
	}
	// A check from another address is no consent.
	e.advance(3 * time.Second)
	e.checkFrom(t, "198.18.0.11:4999", sessUser, sessPwd, 20, false)
	e.advance(3 * time.Second)
	c, o := consent()
	if c || !o {
		t.Fatalf("after 6 s without a check from its address: consent %v, other's %v", c, o)
	}
	if s := e.r.Stats(); s.ConsentExpired != 1 {
		t.Fatalf("consent expired %d", s.ConsentExpired)
	}
	if s := e.sessions(t)["s1"]; s.Consent {
		t.Fatal("listing shows consent")
	}
	// It stays a member: in the conference, not among the receivers.
	r := e.table.NewReader()
	snap := r.Begin()
	members, recv := len(snap.Conference(3)), len(snap.Receivers(snap.LookupAddr(netip.MustParseAddrPort(ep))))
	r.End()
	r.Close()
	if members != 2 || recv != 1 {
		t.Fatalf("members %d receivers %d", members, recv)
	}
	// A replayed consent check does not bring it back.
	e.checkFrom(t, ep, sessUser, sessPwd, 12, false)
	if c, _ := consent(); c {
		t.Fatal("a replayed check restored consent")
	}
	// A fresh one does.
	e.checkFrom(t, ep, sessUser, sessPwd, 21, false)
	if c, _ := consent(); !c {
		t.Fatal("consent not restored")
	}
	if s := e.r.Stats(); s.ConsentRestored != 1 {
		t.Fatalf("consent restored %d", s.ConsentRestored)
	}
	// The timeout is reloadable.
	e.r.SetLimits(Limits{ConsentTimeout: time.Minute})
	e.advance(30 * time.Second)
	if c, _ := consent(); !c {
		t.Fatal("consent lost within the new timeout")
	}
}

// TestSessionRebind: a new association of the session (a new DTLS
// association after an ICE restart on a new port) replaces the bound one.
func TestSessionRebind(t *testing.T) {
	e, _ := sessionEnv(t, Limits{})
	first := e.establishViaSession(t, "198.18.0.11:4000")
	ep2 := "198.18.0.11:4300"
	if !e.checkFrom(t, ep2, sessUser, sessPwd, 40, false) {
		t.Fatal("check not answered")
	}
	e.join(t, ep2, "", 2)
	var second uuid.UUID
	l, _ := e.r.Associations(context.Background())
	for _, a := range l {
		if a.ID != first {
			second = a.ID
		}
	}
	if second == uuid.Nil {
		t.Fatalf("associations %+v", l)
	}
	e.r.HandleMediaKeys(keys(second))
	e.sync(t)
	if _, ok := e.table.Get(first); ok {
		t.Fatal("the session's old association is still installed")
	}
	if got, ok := e.table.Get(second); !ok || got.Conference() != keytable.ConferenceID(3) {
		t.Fatalf("new association %v %v", got, ok)
	}
	if s := e.sessions(t)["s1"]; s.Association != second {
		t.Fatalf("session %+v", s)
	}
}

// TestSessionICERestart: new credentials for the session (a PUT with a new
// ufrag and password) keep its binding: a nominating check with the new
// ones from a new port moves the association; the old ones are refused.
func TestSessionICERestart(t *testing.T) {
	m := newMapMembership()
	m.sessions["s1"] = 3
	c := sessCreds{"mdsess1": {Pwd: sessPwd, Session: "s1", Remote: "epsess1"}}
	e := newEnvCreds(t, Limits{}, m, c)
	id := e.establishViaSession(t, "198.18.0.11:4000")
	const newPwd = "restarted-password-987654321"
	delete(c, "mdsess1")
	c["mdsess2"] = ICECredential{Pwd: newPwd, Session: "s1", Remote: "epsess2"}
	e.advance(time.Second)
	if e.checkFrom(t, "198.18.0.11:4400", sessUser, sessPwd, 50, true) {
		t.Fatal("the old credentials still authenticate")
	}
	if !e.checkFrom(t, "198.18.0.11:4400", "mdsess2:epsess2", newPwd, 51, true) {
		t.Fatal("the new credentials do not authenticate")
	}
	if got, ok := e.table.Get(id); !ok || got.Addr().String() != "198.18.0.11:4400" {
		t.Fatalf("not moved after the ICE restart: %v", got)
	}
}

// TestSessionReassign: a session whose conference changes (a PUT naming
// another conference) takes its association along.
func TestSessionReassign(t *testing.T) {
	e, m := sessionEnv(t, Limits{})
	id := e.establishViaSession(t, "198.18.0.11:4000")
	m.mu.Lock()
	m.sessions["s1"] = 4
	m.mu.Unlock()
	if err := e.r.Reassign(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, ok := e.table.Get(id); !ok || got.Conference() != 4 {
		t.Fatalf("association %v after the session moved to conference 4", got)
	}
	// A deleted session no longer places it: it is ended.
	m.mu.Lock()
	delete(m.sessions, "s1")
	m.mu.Unlock()
	if err := e.r.Reassign(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.table.Get(id); ok {
		t.Fatal("association kept after its session stopped placing it")
	}
}

// TestSessionNATRebinding: after a NAT rebinding the endpoint keeps
// checking its selected pair without USE-CANDIDATE, from the new mapping.
// RebindChecks consecutive fresh checks from one new address, with the
// association's address silent for RebindQuiet, move it; a check from the
// old address in between, a quiet period too short, a replayed check or
// checks alternating between two new addresses do not.
func TestSessionNATRebinding(t *testing.T) {
	e, _ := sessionEnv(t, Limits{})
	ep, nat1, nat2 := "198.18.0.11:4000", "198.18.0.11:4100", "198.18.0.11:4200"
	id := e.establishViaSession(t, ep)
	at := func() string {
		t.Helper()
		got, ok := e.table.Get(id)
		if !ok {
			t.Fatal("association gone")
		}
		return got.Addr().String()
	}
	tx := byte(10)
	check := func(addr string) {
		t.Helper()
		tx++
		if !e.checkFrom(t, addr, sessUser, sessPwd, tx, false) {
			t.Fatalf("check from %s not answered", addr)
		}
	}
	stay := func(what string) {
		t.Helper()
		if at() != ep || e.r.Stats().Moves != 0 {
			t.Fatalf("%s: moved to %s", what, at())
		}
	}

	// Two checks from nat1, but the old address checked within RebindQuiet.
	check(ep)
	e.advance(RebindQuiet / 2)
	check(nat1)
	check(nat1)
	stay("old address not quiet long enough")
	// The old address checks again: the count starts over.
	check(ep)
	e.advance(RebindQuiet)
	check(nat1)
	stay("one check after the old address's")
	// Checks alternating between two new addresses never add up.
	check(nat2)
	check(nat1)
	check(nat2)
	stay("alternating new addresses")
	// A replayed check (a transaction ID already used) does not count.
	e.snd.take()
	if !e.checkFrom(t, nat2, sessUser, sessPwd, tx, false) {
		t.Fatal("replayed check not answered")
	}
	stay("replayed check")
	// Two fresh consecutive checks from nat1, old address quiet: moved.
	check(nat1)
	check(nat1)
	if at() != nat1 {
		t.Fatalf("not moved on a rebinding: at %s", at())
	}
	if s := e.r.Stats(); s.Moves != 1 || s.Rebinds != 1 {
		t.Fatalf("moves %d, rebinds %d", s.Moves, s.Rebinds)
	}
	// The new address's checks are its consent now; the old one's checks
	// do not move it back without the same evidence.
	check(ep)
	if at() != nat1 {
		t.Fatalf("one check from the old address moved it back to %s", at())
	}
}
