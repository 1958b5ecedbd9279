package dataplane

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// TestReinstallSameKeysNoReplay: installing an association again with
// the receive keys it already has (a MediaKeys delivered twice for one
// association, e.g. resent on another tunnel of the MD after the first
// was reported closed: keydist's sendMediaKeys) must not let a packet the
// MD already forwarded through again. The key table makes the second
// Install a re-key (a new generation), the worker a fresh Opener for the
// same keys (a fresh replay window), and the new claim re-bases the SSRC
// for the receivers, so the replay reaches them under new indices, which
// their own replay windows accept. The key table refuses such a re-key
// (ErrSameKeys), and mdslow ignores the duplicate MediaKeys (cascade.Manager
// already refused to install a link's keys twice for this reason).
func TestReinstallSameKeysNoReplay(t *testing.T) {
	ctx := context.Background()
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	eps := newConference(t, newMemTable(), addrs(3))
	ids := make([]uuid.UUID, len(eps))
	install := func(i int) {
		t.Helper()
		if _, err := kt.Install(ctx, keytable.Association{
			ID: ids[i], Addr: eps[i].peer.Addr, Conference: 7, Recv: eps[i].peer.Recv, Send: eps[i].peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range eps {
		ids[i] = uuid.New()
		install(i)
	}
	port := newFakePort(16, 64)
	w := NewWorker(0, port, KeyTable{kt}.NewReader(), WorkerConfig{})
	// deliver runs one packet of endpoint 0 through the worker and
	// returns how many receivers got it and how many of those accepted it
	// (their pion/srtp contexts, replay protection included).
	deliver := func(enc []byte) (sent, accepted int) {
		t.Helper()
		port.reset()
		port.push(append([]byte(nil), enc...), eps[0].peer.Addr)
		if err := w.poll(); err != nil {
			t.Fatal(err)
		}
		bufs, dsts := port.sent()
		for i, b := range bufs {
			for _, r := range eps[1:] {
				if r.peer.Addr == dsts[i] {
					if _, err := r.dec.DecryptRTP(nil, b, nil); err == nil {
						accepted++
					}
				}
			}
		}
		port.reset()
		return len(bufs), accepted
	}
	var kept [][]byte
	for range 5 {
		_, enc := eps[0].sealRTP(t, 60)
		kept = append(kept, enc)
		if n, ok := deliver(enc); n != 2 || ok != 2 {
			t.Fatalf("forwarded to %d, accepted by %d; want 2 and 2", n, ok)
		}
	}
	if n, _ := deliver(kept[2]); n != 0 {
		t.Fatalf("a replay before the re-install was forwarded to %d", n)
	}
	// The same keys again, built anew from the same octets, as the slow
	// path builds them from a MediaKeys message (mdslow.Relay.install).
	recv, err := srtpfast.NewKeys(srtpfast.ProfileAEADAES128GCM, eps[0].clientKey, eps[0].clientSalt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kt.Install(ctx, keytable.Association{
		ID: ids[0], Addr: eps[0].peer.Addr, Conference: 7, Recv: recv, Send: eps[0].peer.Send,
	}); !errors.Is(err, keytable.ErrSameKeys) {
		t.Fatalf("installing the same keys again: %v, want keytable.ErrSameKeys", err)
	}
	for i, enc := range kept {
		if n, ok := deliver(enc); n != 0 {
			t.Fatalf("replay of packet %d after installing the same keys again: forwarded to %d receivers, %d of which accepted it as new media", i, n, ok)
		}
	}
}
