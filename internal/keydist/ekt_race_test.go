package keydist

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// Races between joins, leaves and re-keys of one conference, found in
// review: the EKT source is gated so that a join stops right after reading
// the conference's parameter set.

// gatedEKT is a MemoryEKT whose next Current, once armed, stops after
// reading the set until the gate opens.
type gatedEKT struct {
	*MemoryEKT
	armed   atomic.Bool
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedEKT) Current(c string) (EKTParams, error) {
	p, err := g.MemoryEKT.Current(c)
	if g.armed.CompareAndSwap(true, false) {
		g.entered <- struct{}{}
		<-g.gate
	}
	return p, err
}

func newGatedEnv(t *testing.T) (*env, *gatedEKT) {
	mem, err := NewMemoryEKT(MemoryEKTConfig{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	src := &gatedEKT{MemoryEKT: mem, entered: make(chan struct{}), gate: make(chan struct{})}
	e := newEnv(t, envOpts{
		mdProfiles: []tunnel.ProtectionProfile{tunnel.ProfileDoubleAEADAES128GCM, tunnel.ProfileAEADAES128GCM},
		cfg:        func(c *Config) { c.EKT = src },
	})
	return e, src
}

// TestJoinWhileLeaving: C joins while B leaves. C must not end up on the
// parameter set B holds: its last EKTKey is the one A (who stays) has.
func TestJoinWhileLeaving(t *testing.T) {
	e, src := newGatedEnv(t)
	a, err := joinDouble(t, e, "conf", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
	if err != nil {
		t.Fatal(err)
	}
	b, err := joinDouble(t, e, "conf", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
	if err != nil {
		t.Fatal(err)
	}
	p0 := b.waitKeys(t, 1, 5*time.Second)[0]
	a.waitKeys(t, 1, 5*time.Second)

	src.armed.Store(true)
	cDone := make(chan *ektEndpoint)
	go func() {
		c, err := joinDouble(t, e, "conf", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
		if err != nil {
			t.Error(err)
		}
		cDone <- c
	}()
	<-src.entered   // C's join has read the set, and has not joined
	_ = b.r.Close() // B leaves: close_notify, then the KD re-keys
	time.Sleep(50 * time.Millisecond)
	close(src.gate)
	c := <-cDone
	pa := a.waitKeys(t, 2, 5*time.Second)[1]
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := c.ektKeys()
		if len(got) > 0 && got[len(got)-1].SPI == pa.SPI && bytes.Equal(got[len(got)-1].Key, pa.Key) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("C's EKTKeys %v; A's current spi %d; B (left) holds spi %d", got, pa.SPI, p0.SPI)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pa.SPI == p0.SPI || bytes.Equal(pa.Key, p0.Key) {
		t.Fatal("no re-key after B left")
	}
}

// TestEndedBeforeJoiningEKT: an association that ends between its
// handshake and its joining the EKT members leaves no member behind, and
// the conference's parameter set goes with it.
func TestEndedBeforeJoiningEKT(t *testing.T) {
	e, src := newGatedEnv(t)
	src.armed.Store(true)
	done := make(chan struct{})
	go func() {
		_, _ = joinDouble(t, e, "conf", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
		close(done)
	}()
	<-src.entered // the join has the set, has not joined the members
	e.kd.mu.Lock()
	var a *association
	for _, x := range e.kd.assocs {
		a = x
	}
	e.kd.mu.Unlock()
	ended := make(chan struct{})
	go func() {
		a.terminate(reasonMDDisconnect, 0, false) // the MD's EndpointDisconnect arrives now
		close(ended)
	}()
	time.Sleep(50 * time.Millisecond)
	close(src.gate)
	<-ended
	<-done
	e.kd.mu.Lock()
	n := len(e.kd.members)
	e.kd.mu.Unlock()
	if n != 0 || e.kd.NumAssociations() != 0 || src.Conferences() != 0 {
		t.Fatalf("conferences with EKT members %d, associations %d, EKT sets kept %d", n, e.kd.NumAssociations(), src.Conferences())
	}
}

// TestIdleTimeoutIgnoresForgedRecords: forged records (epoch-1 garbage
// that fails authentication) do not keep an established association past
// IdleTimeout.
func TestIdleTimeoutIgnoresForgedRecords(t *testing.T) {
	reg := NewRegistry()
	known := NewTLSID()
	cfg, fp := simClientConfig(t, known, 7)
	if _, err := reg.AddEndpoint("c", Endpoint{TLSID: known, Fingerprint: fp}); err != nil {
		t.Fatal(err)
	}
	cert, _ := GenerateCertificate(time.Hour)
	kd, err := New(Config{Certificate: cert, Registry: reg, Logger: discardLogger(), IdleTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer kd.Close()
	ft := &fakeTunnel{id: "t1", peer: "md1"}
	kd.tunnelUp(ft)
	sc := newSimClient(t, kd, ft, cfg)
	sc.drive(5 * time.Second)
	if !sc.c.Established() {
		t.Fatalf("not established: %v", sc.c.Err())
	}
	forged := record(contentHandshake, 1, make([]byte, 40))
	deadline := time.Now().Add(5 * time.Second)
	for kd.NumAssociations() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("forged records kept the association alive past IdleTimeout")
		}
		kd.handleTunneledDtls(ft, sc.id, forged)
		time.Sleep(50 * time.Millisecond)
	}
}
