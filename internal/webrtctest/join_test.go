package webrtctest

import (
	"net/netip"
	"testing"
	"time"
)

// TestTwoConferences: four pion PeerConnections join two legacy
// conferences on one MD through the join endpoint; audio and video flow
// both ways inside each conference, byte-exact, nothing crosses between
// the conferences (counted at the receivers), no SRTP errors at the MD.
// Then one session is deleted: its partner stops receiving it.
func TestTwoConferences(t *testing.T) {
	s := newSys(t, sysConfig{conferences: []string{"room-a", "room-b"}, endpoints: 4})
	a1, a2 := newPeer(t, s, 0, "room-a"), newPeer(t, s, 1, "room-a")
	b1, b2 := newPeer(t, s, 2, "room-b"), newPeer(t, s, 3, "room-b")
	peers := []*peer{a1, a2, b1, b2}
	for _, p := range peers {
		p.join()
	}
	for _, p := range peers {
		p.waitConnected(15 * time.Second)
		p.send()
	}
	pairs := [][2]*peer{{a1, a2}, {a2, a1}, {b1, b2}, {b2, b1}}
	const want = 100 // 2 s of each track
	if d, ok := eventually(20*time.Second, func() bool {
		for _, pr := range pairs {
			if pr[0].count(pr[1], 0) < want || pr[0].count(pr[1], 1) < want {
				return false
			}
		}
		return true
	}); !ok {
		for _, pr := range pairs {
			t.Logf("peer %d from %d: audio %d video %d", pr[0].idx, pr[1].idx, pr[0].count(pr[1], 0), pr[0].count(pr[1], 1))
		}
		s.logMetrics()
		for _, p := range peers {
			t.Logf("peer %d: bad %d, ICE %s", p.idx, p.bad.Load(), p.pc.ICEConnectionState())
		}
		s.fatal(errorf("media did not flow both ways in both conferences"))
	} else {
		t.Logf("%d audio and video packets each way in both conferences after %s", want, d.Round(time.Millisecond))
	}
	time.Sleep(time.Second) // more traffic, for the isolation counts
	for _, p := range peers {
		partner := map[*peer]*peer{a1: a2, a2: a1, b1: b2, b2: b1}[p]
		if n := p.foreign(partner); n != 0 {
			t.Errorf("peer %d (%s) received %d packets from another conference", p.idx, p.conf, n)
		}
		if n := p.bad.Load(); n != 0 {
			t.Errorf("peer %d received %d packets with a wrong payload", p.idx, n)
		}
	}
	if n := s.mdMetric("mdfast_packets_dropped_total", `reason="auth"`); n != 0 {
		t.Errorf("mdfast dropped %v packets failing SRTP authentication", n)
	}
	if n := s.mdMetric("mdfast_packets_dropped_total", `reason="malformed"`); n != 0 {
		t.Errorf("mdfast dropped %v malformed packets", n)
	}
	sessions := s.joinSessions()
	if len(sessions) != 4 {
		t.Fatalf("KD join sessions: %+v", sessions)
	}
	for _, js := range sessions {
		if js.Association == "" {
			t.Errorf("join session %s not bound to its association", js.ID)
		}
	}
	mds := s.mdSessions()
	if len(mds) != 4 {
		t.Fatalf("MD sessions: %+v", mds)
	}
	for _, m := range mds {
		if m.Association == "" || !m.Consent {
			t.Errorf("MD session %+v: want bound with consent", m)
		}
	}

	// DELETE a1's session: a2 stops receiving a1, the KD and the MD forget it.
	code, _, body, err := s.request("DELETE", joinURL()+a1.location, s.token("room-a"), "", "")
	if err != nil || code != 204 {
		t.Fatalf("DELETE: %d %v %s", code, err, body)
	}
	deleted := time.Now()
	if _, ok := eventually(5*time.Second, func() bool { return time.Since(a2.last(a1)) > 500*time.Millisecond }); !ok {
		t.Error("a2 still receives a1 after its session was deleted")
	}
	t.Logf("a2's last packet from a1 arrived %s after the DELETE was sent (negative: before it)", a2.last(a1).Sub(deleted).Round(time.Millisecond))
	if n := len(s.joinSessions()); n != 3 {
		t.Errorf("%d KD join sessions after the DELETE", n)
	}
	if n := len(s.mdSessions()); n != 3 {
		t.Errorf("%d MD sessions after the DELETE", n)
	}
	// b1 and b2 are untouched.
	before := b1.count(b2, 1)
	time.Sleep(500 * time.Millisecond)
	if b1.count(b2, 1) <= before {
		t.Error("room-b stopped when room-a's member left")
	}
}

// TestICERestartNewPort: mid-call, a peer moves to a new local port and
// restarts ICE through the join endpoint (PATCH). Media resumes both ways
// within 1 s of the restart answer, the MD counts the move, and nothing
// reaches the old port afterwards.
func TestICERestartNewPort(t *testing.T) {
	s := newSys(t, sysConfig{conferences: []string{"room-a"}, endpoints: 2})
	p1, p2 := inCall(t, s, "room-a", "restart")
	movesBefore := s.mdMetric("mdfast_endpoint_moves_total")
	newAddr := p1.iceRestart(true)
	restarted := time.Now()
	t.Logf("p1 moved to %s", newAddr)
	resumed := func() bool {
		return p1.last(p2).After(restarted.Add(100*time.Millisecond)) && p2.last(p1).After(restarted.Add(100*time.Millisecond))
	}
	if d, ok := eventually(5*time.Second, resumed); !ok || d > time.Second+100*time.Millisecond {
		s.fatal(errorf("media resumed after %s (ok %v), want within 1 s of the restart", d, ok))
	} else {
		t.Logf("media resumed both ways %s after the ICE restart onto a new port", d.Round(time.Millisecond))
	}
	if n := s.mdMetric("mdfast_endpoint_moves_total"); n <= movesBefore {
		t.Errorf("mdfast_endpoint_moves_total %v, was %v", n, movesBefore)
	}
	checkMoved(t, s, p1, p2, newAddr)
}

// TestConsentExpiry: a peer whose ICE agent stops sending checks (its
// outgoing STUN dropped) stops receiving media within the MD's
// consent-timeout, while its own media still reaches the others; when its
// checks come back, so does its media.
func TestConsentExpiry(t *testing.T) {
	const consent = 3 * time.Second
	s := newSys(t, sysConfig{conferences: []string{"room-a"}, endpoints: 2, mdArgs: []string{"-consent-timeout", consent.String()}})
	p1, p2 := inCall(t, s, "room-a", "consent test")
	expiredBefore := s.mdMetric("mdfast_consent_expired_total")
	p1.conn.dropSTUN.Store(true)
	blocked := time.Now()
	if _, ok := eventually(consent+2*time.Second, func() bool { return time.Since(p1.last(p2)) > 500*time.Millisecond }); !ok {
		s.fatal(errorf("p1 still receives media %s after its checks stopped (consent-timeout %s)", time.Since(blocked), consent))
	}
	stoppedAfter := p1.last(p2).Sub(blocked)
	t.Logf("p1's last media packet arrived %s after its checks were blocked (consent-timeout %s, check interval 500 ms)", stoppedAfter.Round(time.Millisecond), consent)
	if stoppedAfter > consent+time.Second {
		t.Errorf("media to p1 stopped %s after its checks stopped, want within the consent-timeout %s (+1 s of check interval)", stoppedAfter, consent)
	}
	// p1's own media still reaches p2.
	before := p2.count(p1, 1)
	time.Sleep(500 * time.Millisecond)
	if p2.count(p1, 1) <= before {
		t.Error("p1's media stopped reaching p2 when p1 lost consent")
	}
	if n := s.mdMetric("mdfast_consent_expired_total"); n <= expiredBefore {
		t.Errorf("mdfast_consent_expired_total %v, was %v", n, expiredBefore)
	}
	p1.conn.dropSTUN.Store(false)
	restored := time.Now()
	if d, ok := eventually(5*time.Second, func() bool { return p1.last(p2).After(restored) }); !ok {
		s.fatal(errorf("p1 does not receive again after its checks resumed"))
	} else {
		t.Logf("media to p1 resumed %s after its checks resumed", d.Round(time.Millisecond))
	}
}

// TestNATRebinding: p1's packets start leaving from a new source port (its
// ICE UDP socket swapped under the agent, which does not know: a NAT
// rebinding) with no ICE restart. pion keeps checking its selected pair
// without USE-CANDIDATE, now from the new mapping; the MD moves p1 after
// mdslow.RebindChecks such checks with its old address silent for
// mdslow.RebindQuiet, and media resumes both ways.
func TestNATRebinding(t *testing.T) {
	s := newSys(t, sysConfig{conferences: []string{"room-a"}, endpoints: 2})
	p1, p2 := inCall(t, s, "room-a", "rebinding")
	rebindsBefore := s.mdMetric("mdfast_slowpath_events_total", `event="rebind"`)
	newAddr, err := p1.conn.swap(p1.s.ep.NS.Name, p1.ip)
	if err != nil {
		t.Fatal(err)
	}
	rebound := time.Now()
	t.Logf("p1's packets now leave from %s", newAddr)
	resumed := func() bool {
		return p1.last(p2).After(rebound.Add(100*time.Millisecond)) && p2.last(p1).After(rebound.Add(100*time.Millisecond))
	}
	// RebindQuiet (2 s) + two checks 500 ms apart + the hand-over.
	if d, ok := eventually(10*time.Second, resumed); !ok || d > 4*time.Second {
		s.fatal(errorf("media resumed after %s (ok %v), want within 4 s of the rebinding", d, ok))
	} else {
		t.Logf("media resumed both ways %s after the NAT rebinding", d.Round(time.Millisecond))
	}
	if n := s.mdMetric("mdfast_slowpath_events_total", `event="rebind"`); n != rebindsBefore+1 {
		t.Errorf("rebind events %v, was %v: want one", n, rebindsBefore)
	}
	checkMoved(t, s, p1, p2, newAddr)
}

// checkMoved checks, after p1 moved to newAddr: the MD's session has its
// new address, nothing reaches p1's old port any more, no packet failed
// SRTP authentication at the MD and every payload was right.
func checkMoved(t *testing.T, s *sys, p1, p2 *peer, newAddr netip.AddrPort) {
	t.Helper()
	for _, m := range s.mdSessions() {
		if m.Association != "" && m.Moves > 0 && m.Addr != newAddr.String() {
			t.Errorf("MD session %+v: want its address %s", m, newAddr)
		}
	}
	time.Sleep(300 * time.Millisecond) // in-flight packets land
	stale := p1.conn.staleRx.Load()
	time.Sleep(time.Second)
	if n := p1.conn.staleRx.Load() - stale; n != 0 {
		t.Errorf("%d datagrams reached the old port after the move", n)
	}
	if n := s.mdMetric("mdfast_packets_dropped_total", `reason="auth"`); n != 0 {
		t.Errorf("mdfast dropped %v packets failing SRTP authentication", n)
	}
	if p1.bad.Load()+p2.bad.Load() != 0 {
		t.Error("bad payloads")
	}
}

// inCall joins two peers to conf, has them send, and waits until each has
// received more than 50 audio packets from the other (before what, in the
// failure message).
func inCall(t *testing.T, s *sys, conf, before string) (*peer, *peer) {
	t.Helper()
	p1, p2 := newPeer(t, s, 0, conf), newPeer(t, s, 1, conf)
	for _, p := range []*peer{p1, p2} {
		p.join()
	}
	for _, p := range []*peer{p1, p2} {
		p.waitConnected(15 * time.Second)
		p.send()
	}
	if _, ok := eventually(15*time.Second, func() bool { return p1.count(p2, 1) > 50 && p2.count(p1, 1) > 50 }); !ok {
		s.fatal(errorf("no media before the %s", before))
	}
	return p1, p2
}
