package dataplane

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pion/rtp"

	"github.com/mdfast/mdfast/internal/keytable"
)

// ktConf is a conference of endpoints in a real key table behind one
// worker.
type ktConf struct {
	kt  *keytable.Table
	f   *fixture
	ids map[*endpoint]uuid.UUID
}

func newKTConf(t *testing.T, cfg keytable.Config) *ktConf {
	kt, err := keytable.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &ktConf{kt: kt, ids: map[*endpoint]uuid.UUID{}}
	c.f = &fixture{tbl: newMemTable(), port: newFakePort(256, 256)}
	c.f.w = NewWorker(0, c.f.port, KeyTable{kt}.NewReader(), WorkerConfig{})
	return c
}

func (c *ktConf) join(t *testing.T, e *endpoint) {
	t.Helper()
	id := uuid.New()
	if _, err := c.kt.Install(context.Background(), keytable.Association{
		ID: id, Addr: e.peer.Addr, Conference: 7, Recv: e.peer.Recv, Send: e.peer.Send,
	}); err != nil {
		t.Fatal(err)
	}
	c.ids[e] = id
	c.f.eps = append(c.f.eps, e)
}

func (c *ktConf) leave(t *testing.T, e *endpoint) {
	t.Helper()
	if err := c.kt.Remove(context.Background(), c.ids[e]); err != nil {
		t.Fatal(err)
	}
	for i, x := range c.f.eps {
		if x == e {
			c.f.eps = append(c.f.eps[:i], c.f.eps[i+1:]...)
			break
		}
	}
}

// send has e send n RTP packets and returns, per receiver, how many it
// decrypted (with its own long-lived pion/srtp context) with e's payload.
func (c *ktConf) send(t *testing.T, e *endpoint, n int) map[*endpoint]int {
	t.Helper()
	got := map[*endpoint]int{}
	for range n {
		plain, enc := e.sealRTP(t, 120)
		c.f.port.push(enc, e.peer.Addr)
		c.f.poll(t)
		var want rtp.Packet
		if err := want.Unmarshal(plain); err != nil {
			t.Fatal(err)
		}
		bufs, dsts := c.f.port.sent()
		for i, b := range bufs {
			r := c.byAddr(dsts[i])
			if r == nil {
				t.Fatalf("sent to %v: not a member", dsts[i])
			}
			dec, err := r.dec.DecryptRTP(nil, b, nil)
			if err != nil {
				continue
			}
			var p rtp.Packet
			if err := p.Unmarshal(dec); err == nil && p.SSRC == want.SSRC && bytes.Equal(p.Payload, want.Payload) {
				got[r]++
			}
		}
		c.f.port.reset()
	}
	return got
}

func (c *ktConf) byAddr(a netip.AddrPort) *endpoint {
	for _, e := range c.f.eps {
		if e.peer.Addr == a {
			return e
		}
	}
	return nil
}

// TestRejoinDelivered: a sender leaves and rejoins (a new association,
// new keys) with the same SSRC while the receivers of its first stream
// remain. They decrypt everything of the second stream with the contexts
// they kept (the MD re-based its indices above the first stream's), and a
// receiver that joined in between decrypts it under the sender's own
// indices. Then re-based forwarding allocates nothing.
func TestRejoinDelivered(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	ad := addrs(5)
	c := newKTConf(t, keytable.Config{})
	a, b, d := newEndpoint(t, r, 1, ad[0]), newEndpoint(t, r, 2, ad[1]), newEndpoint(t, r, 3, ad[2])
	c.join(t, a)
	c.join(t, b)
	c.join(t, d)
	a.seq = 1000
	if got := c.send(t, a, 300); got[b] != 300 || got[d] != 300 {
		t.Fatalf("first stream: delivered %v", got)
	}
	c.leave(t, a)
	late := newEndpoint(t, r, 4, ad[3])
	c.join(t, late)

	a2 := newEndpoint(t, r, 5, ad[4]) // the rejoin: new keys, same SSRC, SEQ starts over
	a2.ssrc, a2.seq = a.ssrc, 10
	c.join(t, a2)
	got := c.send(t, a2, 300)
	if got[b] != 300 || got[d] != 300 || got[late] != 300 {
		st := c.f.w.Stats()
		t.Fatalf("rejoined stream: delivered %v of 300 (b, d, late); %s; table %+v", got, nonZero(&st), c.kt.Stats())
	}
	st := c.f.w.Stats()
	if st[Rebased] != 2*300 || st[DropSSRCCollision] != 0 {
		t.Fatalf("counters: %s", nonZero(&st))
	}

	pkts := make([][]byte, 102)
	for i := range pkts {
		_, pkts[i] = a2.sealRTP(t, 160)
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		c.f.port.reset()
		c.f.port.push(pkts[i], a2.peer.Addr)
		i++
		_ = c.f.w.poll()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per re-based packet", allocs)
	}
}

// TestSquatterCannotLockOut: one participant claims SSRCs as fast as it can,
// including the SSRC a later joiner will use. It hits its budget, its
// silent squat is taken over, and the joiner's media reaches everyone.
func TestSquatterCannotLockOut(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	ad := addrs(3)
	c := newKTConf(t, keytable.Config{})
	sq, rx, j := newEndpoint(t, r, 1, ad[0]), newEndpoint(t, r, 2, ad[1]), newEndpoint(t, r, 3, ad[2])
	c.join(t, sq)
	c.join(t, rx)
	j.ssrc = 0xabcdef
	// 64 SSRCs: as many as the worker's Opener tracks per sender
	// (WorkerConfig.MaxSSRCs); the key table admits the first 16.
	for i := range 64 {
		sq.ssrc = uint32(i)
		if i == 40 {
			sq.ssrc = j.ssrc // the future joiner's SSRC (from signalling)
		}
		c.send(t, sq, 1)
	}
	if ob := c.kt.Stats().SSRCOverBudget; ob != 64-keytable.DefaultMaxSSRCsPerSender {
		t.Fatalf("over budget %d", ob)
	}
	// The squat at i=40 was over budget already; squat it inside the
	// budget instead: a fresh squatter whose first SSRC is the joiner's.
	sq2 := newEndpoint(t, r, 4, netip.MustParseAddrPort("198.18.0.99:40000"))
	sq2.ssrc = j.ssrc
	c.join(t, sq2)
	if got := c.send(t, sq2, 1); got[rx] != 1 {
		t.Fatalf("squat not forwarded: %v", got)
	}
	c.join(t, j)
	// The joiner sends 50 packets a second; the squatter is silent. The
	// claim is taken over once the squatter has been silent for the
	// contest period (the worker's clock is real time: wait it out).
	delivered := 0
	for tries := 0; tries < 40 && delivered == 0; tries++ {
		delivered = c.send(t, j, 5)[rx]
		if delivered == 0 {
			sleepContest()
		}
	}
	if delivered == 0 {
		st := c.f.w.Stats()
		t.Fatalf("joiner locked out: %s; table %+v", nonZero(&st), c.kt.Stats())
	}
	if c.kt.Stats().SSRCTakeovers != 1 {
		t.Errorf("table %+v", c.kt.Stats())
	}
}

func sleepContest() { time.Sleep(keytable.DefaultClaimContest / 10 * time.Nanosecond) }
