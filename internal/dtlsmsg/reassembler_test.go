package dtlsmsg

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func feedAll(t *testing.T, r *Reassembler, dgs [][]byte) []*ClientHello {
	t.Helper()
	var out []*ClientHello
	for i, d := range dgs {
		ch, err := r.Feed(d)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if ch != nil {
			out = append(out, ch)
		}
	}
	return out
}

func TestReassemblerWhole(t *testing.T) {
	id := tlsID(36)
	body := specWithExtensions(id).body()
	r := NewReassembler(0)
	dg := hsDatagram(HandshakeTypeClientHello, 0, body)
	ch, err := r.Feed(dg)
	if err != nil || ch == nil {
		t.Fatalf("Feed = %v, %v", ch, err)
	}
	if !bytes.Equal(ch.ExternalSessionID, id) || !slices.Equal(ch.SRTPProfiles, []uint16{7, 1}) || ch.MessageSeq != 0 {
		t.Fatalf("%+v", ch)
	}
	// The result owns its memory.
	clear(dg)
	if !bytes.Equal(ch.ExternalSessionID, id) {
		t.Fatal("ClientHello aliases the datagram")
	}
	// A retransmission is ignored.
	if ch, err := r.Feed(hsDatagram(HandshakeTypeClientHello, 0, body)); ch != nil || err != nil {
		t.Fatalf("retransmission: %v, %v", ch, err)
	}
}

func TestReassemblerFragmented(t *testing.T) {
	id := tlsID(255)
	body := specWithExtensions(id).body()
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 1))
		dgs := fragmentize(rng, HandshakeTypeClientHello, 0, body)
		r := NewReassembler(len(body))
		var got *ClientHello
		for i, d := range dgs {
			ch, err := r.Feed(d)
			if err != nil {
				t.Fatalf("seed %d datagram %d: %v", seed, i, err)
			}
			if ch != nil {
				if got != nil {
					t.Fatalf("seed %d: yielded twice", seed)
				}
				got = ch
			}
		}
		if got == nil {
			t.Fatalf("seed %d: never complete (%d datagrams)", seed, len(dgs))
		}
		if !bytes.Equal(got.ExternalSessionID, id) || !slices.Equal(got.SRTPProfiles, []uint16{7, 1}) {
			t.Fatalf("seed %d: %+v", seed, got)
		}
	}
}

// TestReassemblerHelloVerify follows a handshake with a HelloVerifyRequest:
// the first ClientHello (message_seq 0) yields, then the one with the cookie
// (message_seq 1) yields again; retransmissions of either are ignored.
func TestReassemblerHelloVerify(t *testing.T) {
	s := specWithExtensions(tlsID(20))
	first := s.body()
	s.cookie = bytes.Repeat([]byte{0xCC}, 32)
	second := s.body()
	rng := rand.New(rand.NewPCG(7, 7))
	r := NewReassembler(0)

	got := feedAll(t, r, fragmentize(rng, HandshakeTypeClientHello, 0, first))
	if len(got) != 1 || got[0].MessageSeq != 0 || got[0].Cookie != nil {
		t.Fatalf("first flight yielded %+v", got)
	}
	firstCH := got[0]
	got = feedAll(t, r, fragmentize(rng, HandshakeTypeClientHello, 0, first))
	if len(got) != 0 {
		t.Fatal("retransmitted first ClientHello yielded")
	}
	got = feedAll(t, r, fragmentize(rng, HandshakeTypeClientHello, 1, second))
	if len(got) != 1 || got[0].MessageSeq != 1 || !bytes.Equal(got[0].Cookie, s.cookie) {
		t.Fatalf("second flight yielded %+v", got)
	}
	if got = feedAll(t, r, append(fragmentize(rng, HandshakeTypeClientHello, 1, second),
		fragmentize(rng, HandshakeTypeClientHello, 0, first)...)); len(got) != 0 {
		t.Fatal("retransmissions yielded")
	}
	if firstCH.Cookie != nil || !bytes.Equal(firstCH.ExternalSessionID, tlsID(20)) {
		t.Fatal("the first result changed when the second was assembled")
	}
}

func TestReassemblerSupersede(t *testing.T) {
	s := specWithExtensions(tlsID(20))
	first := s.body()
	s.cookie = []byte{1, 2, 3}
	second := s.body()
	r := NewReassembler(0)
	mustNil := func(d []byte) {
		t.Helper()
		if ch, err := r.Feed(d); ch != nil || err != nil {
			t.Fatalf("Feed = %v, %v", ch, err)
		}
	}
	// Half of message 0, then half of message 1: message 0 is dropped.
	mustNil(record(22, 0, 0, hsFragment(1, 0, first, 0, 50)))
	mustNil(record(22, 0, 1, hsFragment(1, 1, second, 0, 50)))
	// The rest of message 0 is stale now.
	mustNil(record(22, 0, 2, hsFragment(1, 0, first, 50, len(first)-50)))
	ch, err := r.Feed(record(22, 0, 3, hsFragment(1, 1, second, 50, len(second)-50)))
	if err != nil || ch == nil || ch.MessageSeq != 1 || !bytes.Equal(ch.Cookie, []byte{1, 2, 3}) {
		t.Fatalf("Feed = %+v, %v", ch, err)
	}
}

func TestReassemblerIgnores(t *testing.T) {
	body := specWithExtensions(tlsID(20)).body()
	r := NewReassembler(0)
	ignored := [][]byte{
		record(ContentTypeAlert, 0, 0, []byte{2, 40}),
		record(ContentTypeChangeCipherSpec, 0, 0, []byte{1}),
		record(ContentTypeApplicationData, 1, 0, hsFragment(1, 5, body, 0, len(body))),
		record(ContentTypeHandshake, 1, 0, hsFragment(1, 5, body, 0, len(body))), // encrypted epoch
		hsDatagram(HandshakeTypeServerHello, 0, body),
		hsDatagram(HandshakeTypeHelloVerifyRequest, 0, []byte{0xFE, 0xFD, 0}),
		record(ContentTypeHandshake, 0, 0, nil),                           // empty record
		record(ContentTypeHandshake, 0, 0, hsFragment(1, 0, body, 10, 0)), // empty fragment
		append([]byte{ContentTypeTLS12CID}, make([]byte, 30)...),          // CID record
		append([]byte{0x2C}, make([]byte, 30)...),                         // DTLS 1.3 ciphertext
	}
	for i, d := range ignored {
		if ch, err := r.Feed(d); ch != nil || err != nil {
			t.Fatalf("datagram %d: %v, %v", i, ch, err)
		}
	}
	// Several handshake messages in one record, the ClientHello last, then
	// a CID record in the same datagram.
	payload := append(hsFragment(HandshakeTypeServerHello, 0, []byte{1, 2, 3}, 0, 3),
		hsFragment(HandshakeTypeClientHello, 0, body, 0, len(body))...)
	dg := append(record(ContentTypeAlert, 0, 0, []byte{1, 0}), record(ContentTypeHandshake, 0, 1, payload)...)
	dg = append(dg, ContentTypeTLS12CID, 0xFE, 0xFD)
	ch, err := r.Feed(dg)
	if err != nil || ch == nil || !ch.HasExternalSessionID {
		t.Fatalf("Feed = %v, %v", ch, err)
	}
}

func TestReassemblerErrors(t *testing.T) {
	body := specWithExtensions(tlsID(20)).body()
	badBody := append([]byte{}, body...)
	badBody[0] = 3 // not DTLS

	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"not dtls", []byte{0x80, 1, 2}, ErrNotDTLS},
		{"truncated record", hsDatagram(1, 0, body)[:40], ErrShortRecord},
		{"bad record version", append([]byte{22, 3, 3}, make([]byte, 20)...), ErrBadVersion},
		{"truncated handshake", record(22, 0, 0, hsFragment(1, 0, body, 0, 10)[:15]), ErrShortHandshake},
		{"fragment outside message", record(22, 0, 0, func() []byte {
			f := hsFragment(1, 0, body, 0, 10)
			f[8] = byte(len(body)) // offset near the end
			f[7] = byte(len(body) >> 8)
			return f
		}()), ErrBadFragment},
		{"too large", record(22, 0, 0, hsFragment(1, 0, make([]byte, 2000), 0, 10)), ErrTooLarge},
		{"body does not parse", hsDatagram(1, 0, badBody), ErrBadVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReassembler(1000)
			ch, err := r.Feed(tt.in)
			if !errors.Is(err, tt.want) || ch != nil {
				t.Fatalf("Feed = %v, %v; want %v", ch, err, tt.want)
			}
			// The Reassembler stays usable.
			s := specWithExtensions(tlsID(21))
			s.cookie = []byte{1}
			good := s.body()
			if ch, err := r.Feed(hsDatagram(1, 1, good)); err != nil || ch == nil || !bytes.Equal(ch.ExternalSessionID, tlsID(21)) {
				t.Fatalf("after the error: %v, %v", ch, err)
			}
		})
	}
}

func TestReassemblerConflicts(t *testing.T) {
	body := specWithExtensions(tlsID(20)).body()
	t.Run("different octets", func(t *testing.T) {
		r := NewReassembler(0)
		if ch, err := r.Feed(record(22, 0, 0, hsFragment(1, 0, body, 0, 60))); ch != nil || err != nil {
			t.Fatal(ch, err)
		}
		evil := append([]byte{}, body...)
		evil[55] ^= 0xFF
		if ch, err := r.Feed(record(22, 0, 1, hsFragment(1, 0, evil, 50, len(body)-50))); !errors.Is(err, ErrBadFragment) || ch != nil {
			t.Fatalf("conflicting fragment: %v, %v", ch, err)
		}
		// The conflicting fragment changed nothing: the rest still completes.
		ch, err := r.Feed(record(22, 0, 2, hsFragment(1, 0, body, 40, len(body)-40)))
		if err != nil || ch == nil || !ch.HasExternalSessionID {
			t.Fatalf("completion: %v, %v", ch, err)
		}
	})
	t.Run("different length", func(t *testing.T) {
		r := NewReassembler(0)
		if _, err := r.Feed(record(22, 0, 0, hsFragment(1, 0, body, 0, 60))); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Feed(record(22, 0, 1, hsFragment(1, 0, body[:len(body)-1], 60, 10))); !errors.Is(err, ErrBadFragment) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("complete and error in one datagram", func(t *testing.T) {
		r := NewReassembler(0)
		dg := append(hsDatagram(1, 0, body), 0x80, 0, 0)
		if ch, err := r.Feed(dg); err != nil || ch == nil {
			t.Fatalf("Feed = %v, %v: a complete ClientHello wins over later garbage", ch, err)
		}
	})
}

func TestReassemblerReset(t *testing.T) {
	body := specWithExtensions(tlsID(20)).body()
	r := NewReassembler(0)
	if ch, _ := r.Feed(hsDatagram(1, 3, body)); ch == nil {
		t.Fatal("no ClientHello")
	}
	if ch, _ := r.Feed(hsDatagram(1, 0, body)); ch != nil {
		t.Fatal("older message_seq yielded before Reset")
	}
	r.Reset()
	if ch, err := r.Feed(hsDatagram(1, 0, body)); ch == nil || err != nil {
		t.Fatalf("after Reset: %v, %v", ch, err)
	}
}

func TestReassemblerMemoryBound(t *testing.T) {
	r := NewReassembler(300)
	body := make([]byte, 300)
	for seq := range uint16(50) {
		_, _ = r.Feed(record(22, 0, 0, hsFragment(1, seq, body, 0, 100)))
		_, _ = r.Feed(record(22, 0, 0, hsFragment(1, seq+1000, make([]byte, 301), 0, 1)))
	}
	if cap(r.a.buf) > 300 || cap(r.a.have) > 300/8+1 {
		t.Fatalf("buffers grew to %d and %d", cap(r.a.buf), cap(r.a.have))
	}
	if NewReassembler(-1).a.maxLen != DefaultMaxMessageLen || NewReassembler(1<<30).a.maxLen != 1<<24-1 {
		t.Fatal("maxLen not clamped")
	}
}

func TestServerHelloReassembler(t *testing.T) {
	suite := []byte{0xC0, 0x2B, 0}
	var ext []byte
	ext, _ = AppendExtension(ext, ExtensionUseSRTP, mustSRTP([]uint16{7}, nil))
	ext, _ = AppendExtension(ext, ExtensionExternalSessionID, mustESID(tlsID(50)))
	body := append([]byte{0xFE, 0xFD}, make([]byte, 32)...)
	body = append(body, 0)
	body = append(body, suite...)
	body = append(body, byte(len(ext)>>8), byte(len(ext)))
	body = append(body, ext...)

	// The server's flight: HelloVerifyRequest earlier, then ServerHello
	// (seq 1) with Certificate (seq 2) in the same record, fragmented.
	r := NewServerHelloReassembler(0)
	if sh, err := r.Feed(hsDatagram(HandshakeTypeHelloVerifyRequest, 0, []byte{0xFE, 0xFD, 1, 9})); sh != nil || err != nil {
		t.Fatal(sh, err)
	}
	cert := make([]byte, 100)
	p1 := append(hsFragment(HandshakeTypeServerHello, 1, body, 0, 30), hsFragment(11, 2, cert, 0, 100)...)
	if sh, err := r.Feed(record(22, 0, 1, p1)); sh != nil || err != nil {
		t.Fatal(sh, err)
	}
	sh, err := r.Feed(record(22, 0, 2, hsFragment(HandshakeTypeServerHello, 1, body, 30, len(body)-30)))
	if err != nil || sh == nil || sh.MessageSeq != 1 || !bytes.Equal(sh.ExternalSessionID, tlsID(50)) ||
		!slices.Equal(sh.SRTPProfiles, []uint16{7}) || sh.CipherSuite != 0xC02B {
		t.Fatalf("Feed = %+v, %v", sh, err)
	}
	r.Reset()
	if sh, err := r.Feed(hsDatagram(HandshakeTypeServerHello, 1, body)); sh == nil || err != nil {
		t.Fatalf("after Reset: %v %v", sh, err)
	}
}

// BenchmarkReassembler measures assembling a realistic ClientHello from
// four fragments in separate datagrams (the slow path of a new
// association).
func BenchmarkReassembler(b *testing.B) {
	body := specWithExtensions(tlsID(32)).body()
	q := len(body) / 4
	dgs := [][]byte{
		record(22, 0, 0, hsFragment(1, 0, body, 0, q)),
		record(22, 0, 1, hsFragment(1, 0, body, q, q)),
		record(22, 0, 2, hsFragment(1, 0, body, 2*q, q)),
		record(22, 0, 3, hsFragment(1, 0, body, 3*q, len(body)-3*q)),
	}
	r := NewReassembler(0)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r.Reset()
		for _, d := range dgs {
			if _, err := r.Feed(d); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestReassemblerIncompleteAllocs checks that feeding fragments of an
// incomplete message allocates nothing once the buffers exist.
func TestReassemblerIncompleteAllocs(t *testing.T) {
	body := specWithExtensions(tlsID(32)).body()
	dg := record(22, 0, 0, hsFragment(1, 0, body, 0, 50))
	r := NewReassembler(0)
	_, _ = r.Feed(dg)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset()
		if ch, err := r.Feed(dg); ch != nil || err != nil {
			panic("unexpected")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per incomplete Feed", allocs)
	}
}
