package mdslow

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
	"github.com/mdfast/mdfast/internal/keytable"
)

// mapMembership is a Membership with mappings only: tls-ids, addresses
// (ip:port) and IPs; single, when not 0, is the conference of
// single-conference mode. Tests change it while the relay runs.
type mapMembership struct {
	mu     sync.Mutex
	tlsIDs map[string]keytable.ConferenceID
	addrs  map[netip.AddrPort]keytable.ConferenceID
	ips    map[netip.Addr]keytable.ConferenceID
	single keytable.ConferenceID
	// sessions maps a session ID to its conference.
	sessions map[string]keytable.ConferenceID
}

func newMapMembership() *mapMembership {
	return &mapMembership{tlsIDs: map[string]keytable.ConferenceID{}, addrs: map[netip.AddrPort]keytable.ConferenceID{},
		ips: map[netip.Addr]keytable.ConferenceID{}, sessions: map[string]keytable.ConferenceID{}}
}

func (m *mapMembership) Place(tlsID string, addr netip.AddrPort, checked string) (keytable.ConferenceID, string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sess, inSess := m.sessions[checked]
	sid := ""
	if inSess {
		sid = checked
	}
	if c, ok := m.tlsIDs[tlsID]; ok {
		return c, sid, true
	}
	if inSess {
		return sess, sid, true
	}
	if c, ok := m.addrs[addr]; ok {
		return c, "", true
	}
	if c, ok := m.ips[addr.Addr()]; ok {
		return c, "", true
	}
	return m.single, "", m.single != 0
}

func (m *mapMembership) mapTLSID(id string, c keytable.ConferenceID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c == 0 {
		delete(m.tlsIDs, id)
		return
	}
	m.tlsIDs[id] = c
}

const (
	mappedTLSID   = "tls-id-mapped-to-conference-3"
	unmappedTLSID = "tls-id-that-no-mapping-names"
)

// checkAccessDenied checks that b is one plaintext fatal access_denied
// alert record with record sequence number seq.
func checkAccessDenied(t *testing.T, b []byte, seq uint64) {
	t.Helper()
	rec, rest, err := dtlsmsg.NextRecord(b)
	if err != nil || len(rest) != 0 || rec.ContentType != dtlsmsg.ContentTypeAlert || rec.Epoch != 0 || rec.Version != 0xFEFF || rec.Sequence != seq {
		t.Fatalf("refusal record %+v (%v), want an epoch-0 alert with sequence %d", rec, err, seq)
	}
	if len(rec.Fragment) != 2 || rec.Fragment[0] != 2 || rec.Fragment[1] != 49 {
		t.Fatalf("alert %x, want fatal access_denied (02 31)", rec.Fragment)
	}
}

// TestRelayRefusesUnplaced: an endpoint whose complete ClientHello no
// mapping places is refused before the KD sees its ClientHello: an
// access_denied alert to the endpoint, nothing to the KD (not even an
// EndpointDisconnect: the KD has no state for it), no association, and
// the refusal counted. One a mapping places is admitted and relayed.
func TestRelayRefusesUnplaced(t *testing.T) {
	const ep = "198.18.0.11:4000"
	for _, tc := range []struct {
		name    string
		tlsID   string
		setup   func(*mapMembership)
		refused bool
	}{
		{"no mapping", unmappedTLSID, func(*mapMembership) {}, true},
		{"tls-id mapped", mappedTLSID, func(*mapMembership) {}, false},
		{"another port of a mapped ip:port", unmappedTLSID, func(m *mapMembership) {
			m.addrs[netip.MustParseAddrPort("198.18.0.11:4001")] = 4
		}, true},
		{"ip:port mapped", unmappedTLSID, func(m *mapMembership) { m.addrs[netip.MustParseAddrPort(ep)] = 4 }, false},
		{"ip mapped", unmappedTLSID, func(m *mapMembership) { m.ips[netip.MustParseAddr("198.18.0.11")] = 4 }, false},
		{"single-conference mode", unmappedTLSID, func(m *mapMembership) { m.single = 5 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMapMembership()
			m.tlsIDs[mappedTLSID] = 3
			tc.setup(m)
			e := newEnvWith(t, Limits{}, m)
			e.join(t, ep, tc.tlsID, 1)
			st := e.r.Stats()
			dst, data := e.snd.take()
			l, _ := e.r.Associations(context.Background())
			e.tun.mu.Lock()
			toKD, disc := len(e.tun.order), len(e.tun.disc)
			e.tun.mu.Unlock()
			if !tc.refused {
				if len(l) != 1 || toKD != 1 || len(dst) != 0 || st.Refused[RefusedNoMapping] != 0 || st.Pending != 1 {
					t.Fatalf("placed endpoint: associations %+v, %d to the KD, sent %v, stats %+v", l, toKD, dst, st)
				}
				return
			}
			if len(dst) != 1 || dst[0].String() != ep {
				t.Fatalf("answers %v, want one alert to %s", dst, ep)
			}
			checkAccessDenied(t, data[0], 1) // the cookie-bearing ClientHello's record sequence number
			if toKD != 0 || disc != 0 {
				t.Fatalf("the KD got %d associations' DTLS and %d EndpointDisconnects, want none", toKD, disc)
			}
			if len(l) != 0 || st.Pending != 0 || st.Associations != 0 || st.Refused[RefusedNoMapping] != 1 || st.Started != 1 || st.Ended != 1 {
				t.Fatalf("after refusal: associations %+v, stats %+v", l, st)
			}
			if e.r.Triage(nil, netip.MustParseAddrPort(ep), mdAddr) {
				t.Fatal("a refused endpoint's 5-tuple is still known to the data plane's triage")
			}
		})
	}
}

// TestRelayLateMapping: a mapping added after an endpoint was refused is
// for its next ClientHello (its retransmission too: the cookie is still
// valid), which is admitted; the refused handshake is not revived.
func TestRelayLateMapping(t *testing.T) {
	const ep = "198.18.0.11:4000"
	m := newMapMembership()
	e := newEnvWith(t, Limits{}, m)
	cookie := cookieFor(t, e, netip.MustParseAddrPort(ep), 1)
	hello := clientHelloWith(t, unmappedTLSID, 1, [32]byte{1}, cookie)
	e.send(t, ep, hello)
	if st := e.r.Stats(); st.Refused[RefusedNoMapping] != 1 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
	m.mapTLSID(unmappedTLSID, 9)
	e.snd.take()
	e.send(t, ep, hello) // the endpoint retransmits: its alert was lost
	l, _ := e.r.Associations(context.Background())
	if len(l) != 1 || l[0].State != "handshake" {
		t.Fatalf("associations %+v", l)
	}
	e.r.HandleMediaKeys(keys(l[0].ID))
	e.sync(t)
	if got, ok := e.table.Get(l[0].ID); !ok || got.Conference() != 9 {
		t.Fatalf("installed %v %v, want conference 9", got, ok)
	}
	if st := e.r.Stats(); st.Refused[RefusedNoMapping] != 1 || st.Associations != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// fragments splits a one-record ClientHello into two records, the first
// cut octets of its body and the rest (record sequence numbers seq and
// seq+1).
func fragments(hello []byte, cut int, seq byte) (first, second []byte) {
	body := hello[13+12:]
	frag := func(off, n int, seq byte) []byte {
		hs := []byte{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}
		hs[1], hs[2], hs[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
		hs[6], hs[7], hs[8] = byte(off>>16), byte(off>>8), byte(off)
		hs[9], hs[10], hs[11] = byte(n>>16), byte(n>>8), byte(n)
		hs = append(hs, body[off:off+n]...)
		rec := []byte{22, 0xFE, 0xFF, 0, 0, 0, 0, 0, 0, 0, seq, byte(len(hs) >> 8), byte(len(hs))}
		return append(rec, hs...)
	}
	return frag(0, cut, seq), frag(cut, len(body)-cut, seq+1)
}

// TestRelayRefusesFragmentedUnplaced: a ClientHello in two fragments is
// admitted on its first (which goes to the KD) and refused on the second,
// which completes it: the second is not relayed, the KD gets an
// EndpointDisconnect that frees what it holds, the endpoint an alert.
func TestRelayRefusesFragmentedUnplaced(t *testing.T) {
	const ep = "198.18.0.11:4000"
	e := newEnvWith(t, Limits{}, newMapMembership())
	cookie := cookieFor(t, e, netip.MustParseAddrPort(ep), 1)
	first, second := fragments(clientHelloWith(t, unmappedTLSID, 1, [32]byte{1}, cookie), 2+32+1+1+len(cookie)+4, 5)
	e.send(t, ep, first)
	l, _ := e.r.Associations(context.Background())
	if len(l) != 1 || e.tun.dtls[l[0].ID] != 1 {
		t.Fatalf("first fragment: associations %+v, relayed %v", l, e.tun.dtls)
	}
	id := l[0].ID
	e.snd.take()
	e.send(t, ep, second)
	dst, data := e.snd.take()
	if len(dst) != 1 {
		t.Fatalf("answers %v", dst)
	}
	checkAccessDenied(t, data[0], 6)
	e.tun.mu.Lock()
	relayed, disc := e.tun.dtls[id], append([]uuid.UUID(nil), e.tun.disc...)
	e.tun.mu.Unlock()
	if relayed != 1 || len(disc) != 1 || disc[0] != id {
		t.Fatalf("KD got %d datagrams and EndpointDisconnects %v, want 1 and [%v]", relayed, disc, id)
	}
	if st := e.r.Stats(); st.Refused[RefusedNoMapping] != 1 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRelayRefusedSuccessor: an established endpoint that restarts its
// DTLS with a ClientHello no mapping places (another tls-id) has that
// successor refused; the established association keeps its keys.
func TestRelayRefusedSuccessor(t *testing.T) {
	const ep = "198.18.0.11:4000"
	m := newMapMembership()
	m.tlsIDs[mappedTLSID] = 3
	e := newEnvWith(t, Limits{}, m)
	e.join(t, ep, mappedTLSID, 1)
	l, _ := e.r.Associations(context.Background())
	old := l[0].ID
	e.r.HandleMediaKeys(keys(old))
	e.sync(t)
	e.join(t, ep, unmappedTLSID, 2)
	l, _ = e.r.Associations(context.Background())
	if len(l) != 1 || l[0].ID != old || l[0].State != "established" {
		t.Fatalf("associations %+v", l)
	}
	if _, ok := e.table.Get(old); !ok {
		t.Fatal("established association lost its keys to a refused successor")
	}
	if st := e.r.Stats(); st.Refused[RefusedNoMapping] != 1 || st.Associations != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !e.r.Triage(nil, netip.MustParseAddrPort(ep), mdAddr) {
		t.Fatal("the established endpoint's 5-tuple is no longer known")
	}
}

// TestRelayRefusedAtKeys: an endpoint placed when its ClientHello came
// but whose mapping was removed before its MediaKeys does not get its keys
// installed: EndpointDisconnect to the KD, counted.
func TestRelayRefusedAtKeys(t *testing.T) {
	const ep = "198.18.0.11:4000"
	m := newMapMembership()
	m.tlsIDs[mappedTLSID] = 3
	e := newEnvWith(t, Limits{}, m)
	e.join(t, ep, mappedTLSID, 1)
	l, _ := e.r.Associations(context.Background())
	id := l[0].ID
	m.mapTLSID(mappedTLSID, 0)
	e.r.HandleMediaKeys(keys(id))
	e.sync(t)
	if _, ok := e.table.Get(id); ok {
		t.Fatal("keys installed for an endpoint in no conference")
	}
	if len(e.tun.disc) != 1 || e.tun.disc[0] != id {
		t.Fatalf("EndpointDisconnects %v", e.tun.disc)
	}
	if st := e.r.Stats(); st.Refused[RefusedNoMappingAtKeys] != 1 || st.Pending != 0 || st.Associations != 0 || st.InstallErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRelayReassignEndsUnmapped: after a mapping change, an established
// association whose mapping moved goes to its new conference, one that no
// mapping places any more is ended (removed from the key table,
// EndpointDisconnect to the KD, counted), and the others stay.
func TestRelayReassignEndsUnmapped(t *testing.T) {
	m := newMapMembership()
	ids := map[string]uuid.UUID{}
	e := newEnvWith(t, Limits{}, m)
	for i, name := range []string{"moves", "removed", "stays"} {
		tlsID := "tls-id-of-the-endpoint-that-" + name
		m.mapTLSID(tlsID, 3)
		e.join(t, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)}), 4000).String(), tlsID, 1)
	}
	l, _ := e.r.Associations(context.Background())
	for _, a := range l {
		ids[a.TLSID[len("tls-id-of-the-endpoint-that-"):]] = a.ID
		e.r.HandleMediaKeys(keys(a.ID))
	}
	e.sync(t)
	m.mapTLSID("tls-id-of-the-endpoint-that-moves", 4)
	m.mapTLSID("tls-id-of-the-endpoint-that-removed", 0)
	if err := e.r.Reassign(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]keytable.ConferenceID{"moves": 4, "removed": 0, "stays": 3} {
		got, ok := e.table.Get(ids[name])
		if want == 0 {
			if ok {
				t.Errorf("%s: still in the key table (conference %d)", name, got.Conference())
			}
			continue
		}
		if !ok || got.Conference() != want {
			t.Errorf("%s: in the table %v, conference %v, want %d", name, ok, got, want)
		}
	}
	if len(e.tun.disc) != 1 || e.tun.disc[0] != ids["removed"] {
		t.Fatalf("EndpointDisconnects %v, want [%v]", e.tun.disc, ids["removed"])
	}
	if st := e.r.Stats(); st.Refused[RefusedMappingRemoved] != 1 || st.Associations != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRefusalNames: every Refusal has its own metric label.
func TestRefusalNames(t *testing.T) {
	seen := map[string]bool{}
	for f := range NumRefusals {
		n := f.String()
		if n == "unknown" || seen[n] {
			t.Errorf("refusal %d named %q", f, n)
		}
		seen[n] = true
	}
}
