package dataplane

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/keytable"
)

// TestKeyTableAdapter forwards through the real key table: 1 sender, 2
// receivers, RTP and RTCP, decrypted with pion/srtp; then an SSRC
// collision and zero allocations per packet.
func TestKeyTableAdapter(t *testing.T) {
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	scratch := newMemTable()
	eps := newConference(t, scratch, addrs(3))
	for _, e := range eps {
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: uuid.New(), Addr: e.peer.Addr, Conference: 7, Recv: e.peer.Recv, Send: e.peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{tbl: scratch, eps: eps, port: newFakePort(256, 256)}
	f.w = NewWorker(0, f.port, KeyTable{kt}.NewReader(), WorkerConfig{})
	plain, enc := eps[0].sealRTP(t, 100)
	f.port.push(enc, eps[0].peer.Addr)
	f.poll(t)
	f.checkSent(t, 0, plain)
	plain, enc = eps[0].sealRTCP(t)
	f.port.push(enc, eps[0].peer.Addr)
	f.poll(t)
	f.checkSent(t, 0, plain)

	eps[1].ssrc = eps[0].ssrc
	_, enc = eps[1].sealRTP(t, 100)
	f.port.push(enc, eps[1].peer.Addr)
	f.poll(t)
	if st := f.w.Stats(); st[DropSSRCCollision] != 1 {
		t.Fatalf("collision not counted: %s", nonZero(&st))
	}

	pkts := make([][]byte, 102)
	for i := range pkts {
		_, pkts[i] = eps[0].sealRTP(t, 160)
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		f.port.reset()
		f.port.push(pkts[i], eps[0].peer.Addr)
		i++
		_ = f.w.poll()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet", allocs)
	}
}
