package tunnel

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestEndpointDisconnectNotDroppedWhenCongested: with the tunnel's queue
// full (the MD is not reading), DTLS datagrams are refused with
// ErrQueueFull but EndpointDisconnects are still accepted, and every one of
// them arrives once the MD reads again. The MD's instance announcement is
// seen by the KD and not delivered as an EndpointDisconnect.
func TestEndpointDisconnectNotDroppedWhenCongested(t *testing.T) {
	p := newPKI(t)
	ln := listen(t)
	_, rec, _ := startKD(t, p, KDConfig{QueueLen: 4}, ln)
	c, err := rawDial(t, p, ln.Addr().String(), &p.md)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := NewInstanceID(0)
	if err != nil {
		t.Fatal(err)
	}
	writeMsg(t, c, &SupportedProfiles{Version: Version0, Profiles: testProfiles})
	writeMsg(t, c, &EndpointDisconnect{AssociationID: inst})
	kt := recv(t, rec.up, "TunnelUp")
	eventually(t, "instance announced", func() bool { return kt.Instance() == inst })
	none(t, rec.disc, 0, "announcement delivered as an EndpointDisconnect")

	big := make([]byte, 60000)
	full := false
	for range 10000 {
		if err := kt.SendTunneledDtls(uuid.New(), big); errors.Is(err, ErrQueueFull) {
			full = true
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatal("the queue never filled")
	}
	want := map[uuid.UUID]bool{}
	for range 200 {
		id := uuid.New()
		want[id] = true
		if err := kt.SendEndpointDisconnect(id); err != nil {
			t.Fatalf("EndpointDisconnect refused on a congested tunnel: %v", err)
		}
	}
	if kt.c.controlBacklog() == 0 {
		t.Fatal("the writer is not blocked: the test proves nothing")
	}
	fr := NewFrameReader(c, 0)
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	for len(want) > 0 {
		frame, err := fr.Next()
		if err != nil {
			t.Fatalf("read: %v (%d EndpointDisconnects missing)", err, len(want))
		}
		m, err := Decode(bytes.Clone(frame))
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *EndpointDisconnect:
			if !want[m.AssociationID] {
				t.Fatalf("unexpected EndpointDisconnect %v", m.AssociationID)
			}
			delete(want, m.AssociationID)
		case *TunneledDtls:
		default:
			t.Fatalf("unexpected %s", m.Type())
		}
	}
}

func TestInstanceCaps(t *testing.T) {
	for _, caps := range []byte{0, CapVerifiesCookies} {
		id, err := NewInstanceID(caps)
		if err != nil {
			t.Fatal(err)
		}
		if !IsInstanceID(id) || InstanceCaps(id) != caps || id.Version() != 8 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("instance id %v: caps %d", id, InstanceCaps(id))
		}
	}
	if a := uuid.New(); IsInstanceID(a) || InstanceCaps(a) != 0 {
		t.Fatal("an association id read as an instance id")
	}
}

// TestUnsentDisconnects: what is left in the control lane when a
// connection ends comes back as association ids for the owner to resend
// (an instance announcement is not one).
func TestUnsentDisconnects(t *testing.T) {
	c := &tconn{done: make(chan struct{}), ctlReady: make(chan struct{}, 1)}
	a, b := uuid.New(), uuid.New()
	inst, _ := NewInstanceID(0)
	for _, id := range []uuid.UUID{a, inst, b} {
		buf, err := AppendMessage(nil, &EndpointDisconnect{AssociationID: id})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.enqueueControl(buf); err != nil {
			t.Fatal(err)
		}
	}
	got := c.unsentDisconnects()
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("unsent %v, want [%v %v]", got, a, b)
	}
	if c.controlBacklog() != 0 || len(c.unsentDisconnects()) != 0 {
		t.Fatal("taken twice")
	}
}

// TestSilentPeerReason: a peer that completes TLS and sends nothing is
// refused with the handshake timeout named as such (not as an idle
// timeout of 0s, which is off).
func TestSilentPeerReason(t *testing.T) {
	p := newPKI(t)
	ln := listen(t)
	_, _, lb := startKD(t, p, KDConfig{HandshakeTimeout: 200 * time.Millisecond}, ln)
	if _, err := rawDial(t, p, ln.Addr().String(), &p.md); err != nil {
		t.Fatal(err)
	}
	lb.waitFor(t, "waiting for SupportedProfiles: none within 200ms")
	if strings.Contains(lb.String(), "idle timeout") {
		t.Fatalf("logged as an idle timeout:\n%s", lb.String())
	}
}

// TestFlushControl: FlushControl returns once the queued EndpointDisconnects
// are written, and reports how many are not when the peer does not read.
func TestFlushControl(t *testing.T) {
	p := newPKI(t)
	srv := newRawServer(t, p.tls(t, p.kd, PeerPolicy{}))
	m, _, _, _ := startMD(t, p, MDConfig{Peers: []string{srv.addr()}})
	c := recv(t, srv.conns, "connection")
	readMsg(t, c) // SupportedProfiles
	eventually(t, "tunnel up", func() bool { return m.Up() == 1 })
	// A reading peer: everything is written at once.
	for range 100 {
		if err := m.SendEndpointDisconnect(uuid.New()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if left := m.FlushControl(ctx); left != 0 {
		t.Fatalf("%d unwritten with a reading peer", left)
	}
	// A peer that stops reading: the socket buffers fill; what is left is
	// reported when the deadline comes.
	big := make([]byte, 60000)
	for i := 0; i < 200; i++ {
		_ = m.SendTunneledDtls(uuid.New(), big)
	}
	for range 1000 {
		_ = m.SendEndpointDisconnect(uuid.New())
	}
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if left := m.FlushControl(short); left == 0 {
		t.Fatal("nothing left unwritten although the peer never read: the test proves nothing")
	} else {
		t.Logf("%d EndpointDisconnects unwritten at the deadline", left)
	}
}
