package attacktest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/syssim"
)

// TestMDCrashRestart: three endpoints are established; mdfast is killed
// (SIGKILL) and started again with the same configuration. Within 5 s of
// the new mdfast's /readyz (its tunnel is up), the KD admin API must no
// longer list the dead associations; then two new endpoints join and
// exchange media without loss.
func TestMDCrashRestart(t *testing.T) {
	needRoot(t)
	s := newSys(t, sysConfig{conferences: []confSize{{"call", 5}}, attackerAddrs: -1})
	old := s.endpoints(0, 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.joinAll(ctx, old, 3); err != nil {
		s.fatal(err)
	}
	m := startMedia(old...)
	time.Sleep(time.Second)
	kdl, err := s.kdAssociations()
	if err != nil {
		t.Fatal(err)
	}
	dead := map[string]bool{}
	for _, a := range kdl {
		if a.State == "established" {
			dead[a.ID] = true
		}
	}
	if len(dead) != 3 {
		s.fatal(fmt.Errorf("before the crash the KD lists %d established associations, want 3: %+v", len(dead), kdl))
	}

	s.mdProc.Kill()
	killed := time.Now()
	if err := s.startMD(); err != nil {
		s.fatal(err)
	}
	if err := s.waitReady(20 * time.Second); err != nil {
		s.fatal(err)
	}
	up := time.Now()
	t.Logf("mdfast restarted: /readyz %.2fs after the kill", up.Sub(killed).Seconds())
	var left []string
	took, gone := eventually(12*time.Second, func() bool {
		l, err := s.kdAssociations()
		if err != nil {
			return false
		}
		left = left[:0]
		for _, a := range l {
			if dead[a.ID] {
				left = append(left, a.ID+" "+a.State)
			}
		}
		return len(left) == 0
	})
	if gone {
		t.Logf("the KD forgot the dead associations %.2fs after the new tunnel was up", took.Seconds())
	} else {
		t.Logf("the KD still lists %d dead associations %.1fs after the new tunnel was up: %v", len(left), took.Seconds(), left)
	}
	_ = m.stop() // the old endpoints' sends go nowhere; they do not fail
	if !gone || took > 5*time.Second {
		t.Errorf("dead associations still listed by the KD %.1fs after the restarted MD's tunnel came up (goal: gone within 5s; gone=%v)", took.Seconds(), gone)
	}

	fresh := s.endpoints(0, 3, 2)
	if err := s.joinAll(ctx, fresh, 2); err != nil {
		s.fatal(fmt.Errorf("new endpoints after the MD restart: %w", err))
	}
	m2 := startMedia(fresh...)
	from := time.Now().Add(500 * time.Millisecond)
	time.Sleep(2500 * time.Millisecond)
	to := time.Now()
	for _, err := range m2.stop() {
		t.Errorf("sender stopped: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	l := account(fresh, fresh, from, to)
	t.Logf("media between the new endpoints: %v", l)
	if l.lost != 0 || l.expected == 0 {
		t.Errorf("new endpoints after the MD restart: %v", l)
	}
}

// TestKDRestartRevocation: a 3-party call runs; keydist is killed
// (SIGKILL) and started again, and mdfast's tunnel comes back; then one
// endpoint (A) is revoked through the KD admin API (DELETE
// /v1/conferences/{conf}/endpoints/{tls_id}). Within 5 s the MD must stop
// forwarding A's media (neither other participant receives any packet of
// A sent later than that) and its control API must no longer list A's
// association, while B and C keep receiving each other.
func TestKDRestartRevocation(t *testing.T) {
	needRoot(t)
	s := newSys(t, sysConfig{conferences: []confSize{{"call", 3}}, attackerAddrs: -1})
	eps := s.endpoints(0, 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.joinAll(ctx, eps, 3); err != nil {
		s.fatal(err)
	}
	a, b, c := eps[0], eps[1], eps[2]
	m := startMedia(eps...)
	defer m.stop()
	time.Sleep(time.Second)

	s.kdProc.Kill()
	if _, down := eventually(10*time.Second, func() bool {
		code, _, err := syssim.Get(s.mdHTTP, "http://"+mdMetrics+"/readyz")
		return err == nil && code != http.StatusOK
	}); !down {
		s.fatal(fmt.Errorf("mdfast still ready 10s after keydist was killed"))
	}
	if err := s.startKD(); err != nil {
		s.fatal(err)
	}
	if err := s.waitReady(20 * time.Second); err != nil {
		s.fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if findMD(mustMD(t, s), a.local) == nil {
		t.Fatalf("the MD lost A's association over the KD restart (before any revocation)")
	}

	revoked := time.Now()
	if err := s.kdDelete("/v1/conferences/call/endpoints/" + url.PathEscape(a.id.TLSID)); err != nil {
		s.fatal(err)
	}
	took, gone := eventually(5*time.Second, func() bool {
		l, err := s.mdAssociations()
		return err == nil && findMD(l, a.local) == nil
	})
	time.Sleep(time.Until(revoked.Add(6500 * time.Millisecond)))
	for _, err := range m.stop() {
		t.Logf("sender stopped: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	deadline := revoked.Add(5 * time.Second)
	if gone {
		t.Logf("A's association left the MD control API %.2fs after the revocation", took.Seconds())
	} else {
		t.Errorf("the MD control API still lists A's association 5s after its revocation at the (restarted) KD")
	}
	for _, r := range []*endpoint{b, c} {
		last := r.lastFrom(a)
		t.Logf("%s last received A's media %+.2fs after the revocation", r.name, last.Sub(revoked).Seconds())
		if last.After(deadline) {
			t.Errorf("%s still received A's media %.2fs after A was revoked (goal: none later than 5s)", r.name, last.Sub(revoked).Seconds())
		}
	}
	if last := b.lastFrom(c); last.Before(deadline) {
		t.Errorf("B stopped receiving C at %+.2fs: the revocation of A ended more than A", last.Sub(revoked).Seconds())
	}
	if last := c.lastFrom(b); last.Before(deadline) {
		t.Errorf("C stopped receiving B at %+.2fs: the revocation of A ended more than A", last.Sub(revoked).Seconds())
	}
}

func mustMD(t *testing.T, s *sys) []mdAssoc {
	t.Helper()
	l, err := s.mdAssociations()
	if err != nil {
		t.Fatal(err)
	}
	return l
}
