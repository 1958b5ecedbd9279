package keydist

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/tunnel"
)

// TestMDInstances: associations belong to the MD instance (process) that
// relays them. A new instance of the same MD announcing itself while the
// old one has no tunnel left ends the old instance's associations at once;
// the same instance coming back (a network fault) keeps them; an instance
// without a tunnel for TunnelGrace loses them even while another instance
// of the same identity is connected.
func TestMDInstances(t *testing.T) {
	newInst := func() *fakeTunnel {
		id, err := tunnel.NewInstanceID(0)
		if err != nil {
			t.Fatal(err)
		}
		return &fakeTunnel{peer: "md1", instance: id}
	}
	setup := func(t *testing.T, grace time.Duration) (*KeyDistributor, *fakeTunnel, *simClient) {
		t.Helper()
		reg := NewRegistry()
		tlsID := NewTLSID()
		cfg, fp := simClientConfig(t, tlsID, 7)
		if _, err := reg.AddEndpoint("conf", Endpoint{TLSID: tlsID, Fingerprint: fp}); err != nil {
			t.Fatal(err)
		}
		cert, err := GenerateCertificate(time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		kd, err := New(Config{Certificate: cert, Registry: reg, Logger: discardLogger(), TunnelGrace: grace})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kd.Close() })
		ft := newInst()
		ft.id = "t1"
		kd.tunnelUp(ft)
		kd.tunnelAnnounced(ft)
		sc := newSimClient(t, kd, ft, cfg)
		sc.drive(5 * time.Second)
		if !sc.c.Established() || kd.NumAssociations() != 1 {
			t.Fatalf("not established: %v, %d associations", sc.c.Err(), kd.NumAssociations())
		}
		return kd, ft, sc
	}
	t.Run("restarted MD", func(t *testing.T) {
		kd, old, _ := setup(t, time.Hour)
		kd.tunnelDown(old, nil)
		nt := newInst()
		nt.id = "t2"
		kd.tunnelUp(nt)
		if kd.NumAssociations() != 1 {
			t.Fatal("ended before the new instance announced itself")
		}
		kd.tunnelAnnounced(nt)
		if n := kd.NumAssociations(); n != 0 {
			t.Fatalf("%d associations of the dead instance left", n)
		}
		if nt.count("disconnect") != 0 {
			t.Fatal("EndpointDisconnect sent to the new instance, which never knew the association")
		}
	})
	t.Run("same MD reconnects", func(t *testing.T) {
		kd, old, sc := setup(t, 200*time.Millisecond)
		kd.tunnelDown(old, nil)
		back := &fakeTunnel{id: "t3", peer: "md1", instance: old.instance}
		kd.tunnelUp(back)
		kd.tunnelAnnounced(back)
		time.Sleep(600 * time.Millisecond) // past the grace: the janitor must keep it
		if kd.NumAssociations() != 1 {
			t.Fatal("association of a live MD instance ended")
		}
		// It now talks through the new tunnel.
		a := kd.assocs[assocKey{peer: "md1", id: sc.id}]
		if a == nil || a.tunnel() != back {
			t.Fatal("association not moved to the instance's new tunnel")
		}
	})
	t.Run("instance gone past the grace", func(t *testing.T) {
		kd, old, _ := setup(t, 200*time.Millisecond)
		// Another process of the same identity is connected (a second
		// host sharing a certificate): it does not keep these alive, nor
		// does it end them at once while old might come back.
		other := newInst()
		other.id = "t4"
		kd.tunnelUp(other)
		kd.tunnelDown(old, nil)
		deadline := time.Now().Add(3 * time.Second)
		for kd.NumAssociations() != 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := kd.NumAssociations(); n != 0 {
			t.Fatalf("%d associations of a vanished instance left", n)
		}
	})
}

// TestUnsentDisconnectsResent: EndpointDisconnects a closing tunnel did not
// write go out on another tunnel of the same MD instance, or are counted
// lost when there is none.
func TestUnsentDisconnectsResent(t *testing.T) {
	inst, _ := tunnel.NewInstanceID(0)
	cert, err := GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := New(Config{Certificate: cert, Registry: NewRegistry(), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer kd.Close()
	id1, id2 := uuid.New(), uuid.New()
	t1 := &fakeTunnel{id: "t1", peer: "md1", instance: inst, unsent: []uuid.UUID{id1}}
	t2 := &fakeTunnel{id: "t2", peer: "md1", instance: inst, unsent: []uuid.UUID{id2}}
	kd.tunnelUp(t1)
	kd.tunnelUp(t2)
	kd.tunnelDown(t1, nil)
	if t2.count("disconnect") != 1 {
		t.Fatalf("resent %d on the other tunnel", t2.count("disconnect"))
	}
	kd.tunnelDown(t2, nil)
	if got := counterValue(kd.m.disconnectsLost); got != 1 {
		t.Fatalf("lost %v, want 1", got)
	}
}
