package tunnel

import (
	"bytes"
	"errors"
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
	inst, err := NewInstanceID()
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
