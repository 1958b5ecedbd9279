package dataplane

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func addrs(n int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)}), 40000)
	}
	return out
}

type fixture struct {
	tbl  *memTable
	eps  []*endpoint
	port *fakePort
	w    *Worker
	slow chan SlowPacket
}

func newFixture(t testing.TB, members int) *fixture {
	f := &fixture{tbl: newMemTable(), port: newFakePort(256, 4096), slow: make(chan SlowPacket, 4)}
	f.eps = newConference(t, f.tbl, addrs(members))
	f.w = NewWorker(0, f.port, f.tbl.NewReader(), WorkerConfig{Slow: f.slow})
	return f
}

func (f *fixture) poll(t testing.TB) {
	t.Helper()
	if err := f.w.poll(); err != nil {
		t.Fatal(err)
	}
}

// checkSent checks that each endpoint but the sender got want, decrypted
// with its own keys by pion/srtp.
func (f *fixture) checkSent(t *testing.T, sender int, want []byte) {
	t.Helper()
	bufs, dsts := f.port.sent()
	if len(bufs) != len(f.eps)-1 {
		t.Fatalf("sent %d datagrams, want %d", len(bufs), len(f.eps)-1)
	}
	for i, b := range bufs {
		var ep *endpoint
		for _, e := range f.eps {
			if e.peer.Addr == dsts[i] {
				ep = e
			}
		}
		if ep == nil || ep == f.eps[sender] {
			t.Fatalf("datagram %d to %s: not a receiver", i, dsts[i])
		}
		ep.open(t, b, want)
	}
	f.port.reset()
}

func TestForward(t *testing.T) {
	f := newFixture(t, 3)
	for i := range 20 { // the sequence wraps: ROC 0 -> 1
		for s := range f.eps {
			plain, enc := f.eps[s].sealRTP(t, 100+i)
			f.port.push(enc, f.eps[s].peer.Addr)
			f.poll(t)
			f.checkSent(t, s, plain)
		}
	}
	for s := range f.eps {
		plain, enc := f.eps[s].sealRTCP(t)
		f.port.push(enc, f.eps[s].peer.Addr)
		f.poll(t)
		f.checkSent(t, s, plain)
	}
	st := f.w.Stats()
	if st[Forwarded] != 63 || st[TxPackets] != 126 || st.Drops() != 0 {
		t.Fatalf("stats: forwarded %d tx %d drops %d", st[Forwarded], st[TxPackets], st.Drops())
	}
	if f.eps[0].peer.Seen.(*seen).v.Load() == 0 {
		t.Fatal("last-seen not updated")
	}
}

// TestDrops checks each drop reason on the fake port.
func TestDrops(t *testing.T) {
	stranger := netip.MustParseAddrPort("198.18.0.99:40000")
	tests := []struct {
		name string
		// send pushes datagrams and returns how many should be forwarded.
		send func(t *testing.T, f *fixture)
		want Reason
	}{
		{"unknown source", func(t *testing.T, f *fixture) {
			_, enc := f.eps[0].sealRTP(t, 50)
			f.port.push(enc, stranger)
		}, DropUnknownSource},
		{"bad tag", func(t *testing.T, f *fixture) {
			_, enc := f.eps[0].sealRTP(t, 50)
			enc[len(enc)-1] ^= 1
			f.port.push(enc, f.eps[0].peer.Addr)
		}, DropAuth},
		{"bad tag rtcp", func(t *testing.T, f *fixture) {
			_, enc := f.eps[0].sealRTCP(t)
			enc[10] ^= 1
			f.port.push(enc, f.eps[0].peer.Addr)
		}, DropAuth},
		{"replay", func(t *testing.T, f *fixture) {
			_, enc := f.eps[0].sealRTP(t, 50)
			f.port.push(enc, f.eps[0].peer.Addr)
			f.port.push(enc, f.eps[0].peer.Addr)
		}, DropReplay},
		{"ssrc collision", func(t *testing.T, f *fixture) {
			_, enc := f.eps[0].sealRTP(t, 50)
			f.port.push(enc, f.eps[0].peer.Addr)
			f.eps[1].ssrc = f.eps[0].ssrc
			_, enc = f.eps[1].sealRTP(t, 50)
			f.port.push(enc, f.eps[1].peer.Addr)
		}, DropSSRCCollision},
		{"junk", func(t *testing.T, f *fixture) {
			f.port.push([]byte{70, 1, 2, 3}, f.eps[0].peer.Addr)
		}, DropJunk},
		{"empty", func(t *testing.T, f *fixture) {
			f.port.push(nil, f.eps[0].peer.Addr)
		}, DropEmpty},
		{"short", func(t *testing.T, f *fixture) {
			f.port.push([]byte{0x80, 96, 0, 1}, f.eps[0].peer.Addr)
		}, DropMalformed},
		{"no receivers", func(t *testing.T, f *fixture) {
			f.tbl.members = f.tbl.members[:1]
			_, enc := f.eps[0].sealRTP(t, 50)
			f.port.push(enc, f.eps[0].peer.Addr)
		}, DropNoReceivers},
		{"tx full", func(t *testing.T, f *fixture) {
			f.port.full = true
			_, enc := f.eps[0].sealRTP(t, 50)
			f.port.push(enc, f.eps[0].peer.Addr)
		}, DropTxFull},
		{"slow full", func(t *testing.T, f *fixture) {
			for range cap(f.slow) + 1 {
				f.port.push([]byte{22, 0xfe, 0xfd}, f.eps[0].peer.Addr)
			}
		}, DropSlowFull},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 3)
			tc.send(t, f)
			f.poll(t)
			st := f.w.Stats()
			if st[tc.want] == 0 {
				t.Fatalf("%s not counted; stats %v", tc.want, nonZero(&st))
			}
		})
	}
}

func nonZero(s *Stats) string {
	out := ""
	for c := Counter(0); c < NumCounters; c++ {
		if s[c] != 0 {
			out += fmt.Sprintf("%s=%d ", c, s[c])
		}
	}
	return out
}

// TestSlowPath: DTLS and STUN reach the slow-path channel as copies.
func TestSlowPath(t *testing.T) {
	f := newFixture(t, 2)
	dtls := []byte{22, 0xfe, 0xfd, 0, 0}
	stun := []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}
	f.port.push(dtls, f.eps[0].peer.Addr)
	f.port.push(stun, f.eps[1].peer.Addr)
	f.poll(t)
	for _, want := range []struct {
		b    []byte
		from netip.AddrPort
	}{{dtls, f.eps[0].peer.Addr}, {stun, f.eps[1].peer.Addr}} {
		got := <-f.slow
		if string(got.Data) != string(want.b) || got.From != want.from {
			t.Fatalf("slow path got % x from %s", got.Data, got.From)
		}
	}
	if st := f.w.Stats(); st[SlowPath] != 2 {
		t.Fatalf("slow_path %d", st[SlowPath])
	}
}

// TestRekey: a new generation of the sender's keys gets a new Opener.
func TestRekey(t *testing.T) {
	f := newFixture(t, 2)
	plain, enc := f.eps[0].sealRTP(t, 10)
	f.port.push(enc, f.eps[0].peer.Addr)
	f.poll(t)
	f.checkSent(t, 0, plain)
	// New keys for endpoint 1, and a sequence far behind the old one: only
	// a new Opener accepts it.
	ne := newEndpoint(t, rand.New(rand.NewPCG(99, 99)), f.eps[0].peer.ID, f.eps[0].peer.Addr)
	ne.peer.Gen = 2
	ne.seq = 1000
	ne.ssrc = 0x2001
	f.tbl.add(ne.peer)
	plain, enc = ne.sealRTP(t, 10)
	f.port.push(enc, ne.peer.Addr)
	f.poll(t)
	f.checkSent(t, 0, plain)
}

// TestZeroAllocs asserts that forwarding allocates nothing per packet.
func TestZeroAllocs(t *testing.T) {
	for _, rtcp := range []bool{false, true} {
		t.Run(fmt.Sprintf("rtcp=%v", rtcp), func(t *testing.T) {
			f := newFixture(t, 4)
			const runs = 200
			pkts := make([][]byte, runs+2)
			for i := range pkts {
				if rtcp {
					_, pkts[i] = f.eps[0].sealRTCP(t)
				} else {
					_, pkts[i] = f.eps[0].sealRTP(t, 160)
				}
			}
			// Warm up: the sender's Opener and SSRC claim are made once.
			f.port.push(pkts[0], f.eps[0].peer.Addr)
			f.poll(t)
			i := 1
			allocs := testing.AllocsPerRun(runs, func() {
				f.port.reset()
				f.port.push(pkts[i], f.eps[0].peer.Addr)
				i++
				_ = f.w.poll()
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per packet", allocs)
			}
			if st := f.w.Stats(); st[Forwarded] != runs+2 || st.Drops() != 0 {
				t.Fatalf("forwarded %d drops %d: %s", st[Forwarded], st.Drops(), nonZero(&st))
			}
		})
	}
}

// TestAutoModeMissingInterface: auto mode with an interface that does not
// exist is an error, not a quiet step down to the socket mode.
func TestAutoModeMissingInterface(t *testing.T) {
	_, err := New(Config{Mode: ModeAuto, Interface: "mdf-missing0", Ports: []uint16{45004},
		Address: netip.MustParseAddr("127.0.0.1"), Table: newMemTable()})
	if err == nil || !strings.Contains(err.Error(), "mdf-missing0") {
		t.Fatalf("New = %v, want an error naming the interface", err)
	}
}

// TestPrivilegeHint: a permission error opening the data plane names the
// capabilities, whatever the kernel's error text suggests.
func TestPrivilegeHint(t *testing.T) {
	eperm := fmt.Errorf("load program: %w (MEMLOCK may be too low, consider rlimit.RemoveMemlock)", unix.EPERM)
	if err := privilegeHint(eperm); !errors.Is(err, ErrNoPrivilege) || !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "CAP_BPF") {
		t.Fatalf("privilegeHint(EPERM) = %v", err)
	}
	other := errors.New("interface gone")
	if err := privilegeHint(other); err != other {
		t.Fatalf("privilegeHint(other) = %v", err)
	}
}
