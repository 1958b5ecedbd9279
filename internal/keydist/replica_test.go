package keydist

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// replica is one in-process KD replica on the shared etcd.
type replica struct {
	*env
	store *Store
	ekt   *EtcdEKT
}

func newReplica(t *testing.T, c TestEtcd, name string) *replica {
	t.Helper()
	s := newTestStore(t, c, name)
	src := newTestEtcdEKT(t, s)
	e := newEnv(t, envOpts{
		mdProfiles: []tunnel.ProtectionProfile{tunnel.ProfileDoubleAEADAES128GCM, tunnel.ProfileAEADAES128GCM},
		cfg: func(cfg *Config) {
			cfg.EKT = src
			cfg.Publisher = s
			s.AttachRegistry(cfg.Registry)
		},
	})
	deadline := time.Now().Add(10 * time.Second)
	for s.Check() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not ready: %v", name, s.Check())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &replica{env: e, store: s, ekt: src}
}

func sameKey(a, b *dtls.EKTKey) bool {
	return a.SPI == b.SPI && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.MasterSalt, b.MasterSalt)
}

// TestReplicasShareEKT: two KD replicas on one etcd. Endpoints of one
// double+EKT conference handshaking on either get the same EKT set; an
// endpoint registered through replica 1 completes on replica 2; a member
// leaving on replica 1 re-keys the members on replica 2 (both while
// replica 1 keeps members and when its last one leaves); with replica 1
// gone, a newcomer through replica 2 gets the members' SPI.
func TestReplicasShareEKT(t *testing.T) {
	c := startEtcd(t)
	r1 := newReplica(t, c, "kd1")
	r2 := newReplica(t, c, "kd2")
	join := func(reg *Registry, via *replica) *ektEndpoint {
		t.Helper()
		ep, err := joinDoubleVia(t, reg, via.env, "conf", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
		if err != nil {
			t.Fatal(err)
		}
		ep.waitKeys(t, 1, 5*time.Second)
		return ep
	}
	a1 := join(r1.reg, r1)
	a2 := join(r1.reg, r1)
	b1 := join(r1.reg, r2) // registered through replica 1, handshake on replica 2
	b2 := join(r2.reg, r2)
	k0 := a1.ektKeys()[0]
	for _, ep := range []*ektEndpoint{a2, b1, b2} {
		if !sameKey(ep.ektKeys()[0], k0) {
			t.Fatal("two EKT parameter sets handed to members of one conference")
		}
	}

	// a1 leaves replica 1: replica 1 re-keys, replica 2's members follow.
	left := time.Now()
	_ = a1.r.Close()
	k1 := a2.waitKeys(t, 2, 5*time.Second)[1]
	if k1.SPI == k0.SPI {
		t.Fatal("no re-key on leave")
	}
	for _, ep := range []*ektEndpoint{b1, b2} {
		k := ep.waitKeys(t, 2, 5*time.Second)[1]
		if !sameKey(k, k1) {
			t.Fatalf("member on replica 2 got SPI %d, replica 1's re-key is SPI %d", k.SPI, k1.SPI)
		}
	}
	t.Logf("a leave on replica 1 re-keyed the members on replica 2 %v after it", time.Since(left))
	waitCounter(t, r2.kd.m.ektRemoteRekeys, 1)

	// a2, replica 1's last member, leaves: the set is re-keyed in the
	// store (whoever left knew it) and replica 2's members get it.
	_ = a2.r.Close()
	k2 := b1.waitKeys(t, 3, 5*time.Second)[2]
	if k2.SPI == k1.SPI || bytes.Equal(k2.Key, k1.Key) {
		t.Fatal("replica 1's last member left without a re-key")
	}
	if k := b2.waitKeys(t, 3, 5*time.Second)[2]; !sameKey(k, k2) {
		t.Fatal("replica 2's members got different sets")
	}
	for _, ep := range []*ektEndpoint{a1, a2} {
		if n := len(ep.ektKeys()); n > 2 {
			t.Fatalf("a member who left got %d EKTKeys", n)
		}
	}

	// Replica 1 dies: newcomers join through replica 2 with the same SPI.
	_ = r1.kd.Close()
	_ = r1.store.Close()
	b3 := join(r2.reg, r2)
	if k := b3.ektKeys()[0]; !sameKey(k, k2) {
		t.Fatalf("newcomer after replica 1 died got SPI %d, members have %d", k.SPI, k2.SPI)
	}
}

// TestReplicaStoreDown: with etcd stopped, an established association
// keeps its keys (nothing ends, no EKTKey), a new conference's first
// handshake fails within the bound with a counted error, registry writes
// answer 503, readiness fails, and the re-key a departure needs waits;
// after etcd restarts the re-key is made and sent, a newcomer gets it, and
// a new conference works, without restarting the KD.
func TestReplicaStoreDown(t *testing.T) {
	c := startEtcd(t)
	r := newReplica(t, c, "kd1")
	a, err := joinDouble(t, r.env, "held", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
	if err != nil {
		t.Fatal(err)
	}
	ka := a.waitKeys(t, 1, 5*time.Second)[0]
	a2, err := joinDouble(t, r.env, "held", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
	if err != nil {
		t.Fatal(err)
	}
	a2.waitKeys(t, 1, 5*time.Second)
	// Registered now, joined while etcd is down.
	freshTLSID := NewTLSID()
	freshCfg, freshFP := simClientConfig(t, freshTLSID, ProfileDoubleAES128GCM, ProfileAEADAES128GCM)
	freshCfg.EKTCiphers = []dtls.EKTCipher{dtls.EKTCipherAESKW128}
	freshCfg.VerifyPeer = dtls.PinSHA256(r.kdFP)
	if _, err := r.reg.AddEndpoint("fresh", Endpoint{TLSID: freshTLSID, Fingerprint: freshFP}); err != nil {
		t.Fatal(err)
	}

	c.Stop(0)
	if err := r.store.Check(); err == nil {
		t.Fatal("readiness passes with etcd stopped")
	}
	// A registry write fails clearly: ErrStoreUnavailable, 503 at the API.
	if _, err := r.reg.AddEndpoint("held", Endpoint{TLSID: NewTLSID(), Fingerprint: freshFP}); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("registry write with etcd down: %v", err)
	}
	admin, err := NewAdminHandler(AdminConfig{Registry: r.reg, KD: r.kd, Token: "0123456789abcdef0123", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPut, "/v1/conferences/other", strings.NewReader(`{"allow_legacy":false}`))
	req.Header.Set("Authorization", "Bearer 0123456789abcdef0123")
	rec := httptest.NewRecorder()
	admin.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("admin PUT with etcd down: %d %s", rec.Code, rec.Body)
	}

	// The first handshake of a new conference fails within the bound.
	before := counterValue(r.kd.m.ended.WithLabelValues(reasonEKTUnavailable))
	start := time.Now()
	f, _ := joinRegistered(t, r.env, freshCfg, ProfileDoubleAES128GCM)
	waitCounter(t, r.kd.m.ended.WithLabelValues(reasonEKTUnavailable), before+1)
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("failed after %v: the store timeout is 1s", took)
	}
	if len(f.ektKeys()) != 0 {
		t.Fatal("an EKTKey without the store")
	}
	if counterValue(r.store.errCount(storeOpEKTGet)) == 0 {
		t.Fatal("store error not counted")
	}
	// The established member kept its association and got nothing new.
	time.Sleep(300 * time.Millisecond)
	if n := len(a.ektKeys()); n != 1 {
		t.Fatalf("established member got %d EKTKeys during the outage", n)
	}
	if id := r.relay.idFor(a.local); hasKind(r.relay.events(id), "disconnect") {
		t.Fatal("established association ended during the outage")
	}
	// A member leaves during the outage: the re-key it needs cannot be
	// made now; it is made (and sent) once etcd is back.
	_ = a2.r.Close()
	waitCounter(t, r.store.errCount(storeOpEKTRekey), 1)

	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for r.store.Check() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready after etcd came back: %v", r.store.Check())
		}
		time.Sleep(50 * time.Millisecond)
	}
	kr := a.waitKeys(t, 2, 10*time.Second)[1]
	if kr.SPI == ka.SPI || bytes.Equal(kr.Key, ka.Key) {
		t.Fatal("the re-key a departure during the outage needed was not made after it")
	}
	b, err := joinDouble(t, r.env, "held", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
	if err != nil {
		t.Fatal(err)
	}
	if k := b.waitKeys(t, 1, 5*time.Second)[0]; !sameKey(k, kr) {
		t.Fatalf("newcomer after the outage got SPI %d, the member has %d", k.SPI, kr.SPI)
	}
	n, err := joinDouble(t, r.env, "fresh", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
	if err != nil {
		t.Fatal(err)
	}
	n.waitKeys(t, 1, 5*time.Second)
}

// remoteHas reports whether s lists an association of conference with
// tls-id tlsID published by another replica.
func remoteHas(s *Store, conference, tlsID string) bool {
	for _, a := range s.RemoteAssociations() {
		if a.Conference == conference && a.TLSID == tlsID && a.State == "established" {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAssociationsAcrossReplicas: an association established on replica 2
// is listed by replica 1 (what its join endpoint binds sessions to); its
// end removes it; when replica 2 vanishes (its lease goes) the
// associations it held stay listed as orphans (the MD still forwards with
// their keys), not as ended.
func TestAssociationsAcrossReplicas(t *testing.T) {
	c := startEtcd(t)
	r1 := newReplica(t, c, "kd1")
	r2 := newReplica(t, c, "kd2")
	var tlsIDs []string
	var eps []*ektEndpoint
	for range 2 {
		tlsID := NewTLSID()
		cfg, fp := simClientConfig(t, tlsID, ProfileDoubleAES128GCM, ProfileAEADAES128GCM)
		cfg.EKTCiphers = []dtls.EKTCipher{dtls.EKTCipherAESKW128}
		cfg.VerifyPeer = dtls.PinSHA256(r2.kdFP)
		if _, err := r1.reg.AddEndpoint("conf", Endpoint{TLSID: tlsID, Fingerprint: fp}); err != nil {
			t.Fatal(err)
		}
		ep, err := joinRegistered(t, r2.env, cfg, ProfileDoubleAES128GCM)
		if err != nil {
			t.Fatal(err)
		}
		ep.waitKeys(t, 1, 5*time.Second)
		tlsIDs, eps = append(tlsIDs, tlsID), append(eps, ep)
	}
	for _, id := range tlsIDs {
		waitFor(t, "replica 1 lists replica 2's association", func() bool { return remoteHas(r1.store, "conf", id) })
	}
	if remoteHas(r2.store, "conf", tlsIDs[0]) {
		t.Fatal("a replica lists its own associations as remote")
	}
	_ = eps[0].r.Close()
	waitFor(t, "an ended association leaves replica 1's list", func() bool { return !remoteHas(r1.store, "conf", tlsIDs[0]) })
	// Replica 2 loses the store (its lease is revoked, as when it dies).
	_ = r2.store.Close()
	time.Sleep(500 * time.Millisecond)
	if !remoteHas(r1.store, "conf", tlsIDs[1]) {
		t.Fatal("the association of a vanished replica was taken for ended")
	}
}

// TestRegistryAcrossReplicas: the registry's API layer through two
// replicas: a tls-id raced into two conferences through both is
// registered once; a removal through one replica is seen by the other;
// removing a conference hides its file entries on both (revocations are
// shared) and frees its tls-ids; a stale tls-id claim (its entry gone) does
// not block a new registration.
func TestRegistryAcrossReplicas(t *testing.T) {
	c := startEtcd(t)
	r1 := newReplica(t, c, "kd1")
	r2 := newReplica(t, c, "kd2")
	fp := Fingerprint{7}
	for range 5 {
		tlsID := NewTLSID()
		var e1, e2 error
		done := make(chan struct{})
		go func() { _, e1 = r1.reg.AddEndpoint("one", Endpoint{TLSID: tlsID, Fingerprint: fp}); close(done) }()
		_, e2 = r2.reg.AddEndpoint("two", Endpoint{TLSID: tlsID, Fingerprint: fp})
		<-done
		if (e1 == nil) == (e2 == nil) {
			t.Fatalf("one tls-id raced into two conferences: %v / %v", e1, e2)
		}
		if err := cmpErr(e1, e2); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("loser: %v, want ErrDuplicate", err)
		}
	}
	tlsID := NewTLSID()
	added, err := r1.reg.AddEndpoint("conf", Endpoint{TLSID: tlsID, Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica 2 sees the endpoint with replica 1's KD tls-id", func() bool {
		c, ok := r2.reg.Conference("conf")
		return ok && len(c.Endpoints) == 1 && c.Endpoints[0].KDTLSID == added.KDTLSID
	})
	if n, err := r2.reg.RemoveEndpoint("conf", tlsID, nil); err != nil || n != 1 {
		t.Fatalf("remove through replica 2: %d %v", n, err)
	}
	waitFor(t, "replica 1 sees the removal", func() bool {
		c, _ := r1.reg.Conference("conf")
		return len(c.Endpoints) == 0
	})
	if _, err := r2.reg.AddEndpoint("other", Endpoint{TLSID: tlsID, Fingerprint: fp}); err != nil {
		t.Fatalf("tls-id not freed by its removal: %v", err)
	}

	// File entries: the same file on both replicas; removing the
	// conference through replica 1 hides them on replica 2 too.
	fileID := NewTLSID()
	for _, r := range []*replica{r1, r2} {
		if err := r.reg.ReplaceFile([]Conference{{ID: "filed", Endpoints: []Endpoint{{TLSID: fileID, Fingerprint: fp, KDTLSID: NewTLSID()}}}}); err != nil {
			t.Fatal(err)
		}
	}
	apiID := NewTLSID()
	if _, err := r2.reg.AddEndpoint("filed", Endpoint{TLSID: apiID, Fingerprint: fp}); err != nil {
		t.Fatal(err)
	}
	if err := r1.reg.RemoveConference("filed"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica 2 hides the removed conference's entries", func() bool {
		c, _ := r2.reg.Conference("filed")
		return len(c.Endpoints) == 0
	})
	if _, err := r1.reg.AddEndpoint("again", Endpoint{TLSID: apiID, Fingerprint: fp}); err != nil {
		t.Fatalf("tls-id of a removed conference not freed: %v", err)
	}

	// A stale claim: its entry does not exist.
	stale := NewTLSID()
	m := r1.reg.store.(*regMirror)
	ghost := Endpoint{TLSID: stale, Fingerprint: Fingerprint{9}}
	if _, err := c.Client(t).Put(t.Context(), m.claimKey(stale), claimValue("gone", &ghost)); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.reg.AddEndpoint("conf", Endpoint{TLSID: stale, Fingerprint: fp}); err != nil {
		t.Fatalf("a stale claim blocks the tls-id: %v", err)
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// TestJoinAcrossReplicas: a WebRTC/PERC app joins through replica 1's join
// endpoint and its endpoint's handshake reaches replica 2 (the MD's tunnel
// led there). Replica 1's session binds to that association (published in
// the store) instead of timing out and unregistering the endpoint; when
// the endpoint leaves, the session ends and the registration is gone on
// both replicas.
func TestJoinAcrossReplicas(t *testing.T) {
	c := startEtcd(t)
	r1 := newReplica(t, c, "kd1")
	r2 := newReplica(t, c, "kd2")
	if err := r1.reg.SetConference("perc", false); err != nil {
		t.Fatal(err)
	}
	md := newFakeMD(t)
	secret := bytes.Repeat([]byte{3}, 32)
	var mu sync.Mutex
	now := time.Now()
	j, err := NewJoin(JoinConfig{
		Registry:      r1.reg,
		MD:            &MDControlClient{URL: md.srv.URL, Token: fakeMDToken},
		Associations:  func() []AssociationInfo { return append(r1.kd.Associations(), r1.store.RemoteAssociations()...) },
		Fingerprint:   r1.kdFP,
		Candidates:    []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:4000")},
		Secret:        secret,
		Logger:        discardLogger(),
		SweepInterval: time.Hour, // swept by hand
		now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(j.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = j.Close()
	})
	tlsID := NewTLSID()
	cfg, fp := simClientConfig(t, tlsID, ProfileDoubleAES128GCM, ProfileAEADAES128GCM)
	cfg.EKTCiphers = []dtls.EKTCipher{dtls.EKTCipherAESKW128}
	cfg.VerifyPeer = dtls.PinSHA256(r2.kdFP)
	tok, err := MintJoinToken(secret, "perc", now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/join/perc", strings.NewReader(testOffer(fp, tlsID)))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("join through replica 1: %d", resp.StatusCode)
	}
	ep, err := joinRegistered(t, r2.env, cfg, ProfileDoubleAES128GCM)
	if err != nil {
		t.Fatalf("handshake on replica 2 of an endpoint joined through replica 1: %v", err)
	}
	ep.waitKeys(t, 1, 5*time.Second)
	waitFor(t, "replica 1 lists the association", func() bool { return remoteHas(r1.store, "perc", tlsID) })
	mu.Lock()
	now = now.Add(DefaultJoinTimeout + time.Second)
	mu.Unlock()
	j.sweep()
	if s := j.Sessions(); len(s) != 1 || s[0].Association == "" {
		t.Fatalf("session not bound to the association on replica 2: %+v", s)
	}
	if _, ok := r2.reg.current().lookupTLSID([]byte(tlsID)); !ok {
		t.Fatal("the endpoint's registration is gone")
	}
	_ = ep.r.Close()
	waitFor(t, "the association's end reaches replica 1", func() bool { return !remoteHas(r1.store, "perc", tlsID) })
	j.sweep()
	if s := j.Sessions(); len(s) != 0 {
		t.Fatalf("session outlived its association: %+v", s)
	}
	waitFor(t, "the registration is gone on replica 2", func() bool {
		_, ok := r2.reg.current().lookupTLSID([]byte(tlsID))
		return !ok
	})
}
