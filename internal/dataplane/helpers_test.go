package dataplane

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

// memTable is a key table for tests: one conference, address → Peer.
type memTable struct {
	mu      sync.Mutex
	byAddr  map[netip.AddrPort]*Peer
	members []*Peer
	ssrcs   map[uint32]uint64
}

func newMemTable() *memTable {
	return &memTable{byAddr: map[netip.AddrPort]*Peer{}, ssrcs: map[uint32]uint64{}}
}

func (t *memTable) add(p *Peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byAddr[p.Addr] = p
	for i, m := range t.members {
		if m.ID == p.ID {
			t.members[i] = p
			return
		}
	}
	t.members = append(t.members, p)
}

func (t *memTable) NewReader() Reader { return &memReader{t: t} }

type memReader struct {
	t   *memTable
	idx uint64
}

func (r *memReader) Begin() { r.t.mu.Lock() }
func (r *memReader) End()   { r.t.mu.Unlock() }
func (r *memReader) Route(src netip.AddrPort) (*Peer, []*Peer, bool) {
	p, ok := r.t.byAddr[src]
	return p, r.t.members, ok
}
func (r *memReader) RouteLink(netip.AddrPort, uint32) (*Peer, []*Peer, bool) {
	return nil, nil, false
}
func (r *memReader) Admit(sender *Peer, ssrc uint32, _ bool, index uint64, _ int64) (rebased, ok bool) {
	r.idx = index
	owner, ok := r.t.ssrcs[ssrc]
	if !ok {
		r.t.ssrcs[ssrc] = sender.ID
		return false, true
	}
	return false, owner == sender.ID
}

func (r *memReader) OutIndex(*Peer) (uint64, bool) { return r.idx, true }

// The memTable routes every sender on every worker: nothing to hand over.
func (r *memReader) ID() int                       { return 1 }
func (r *memReader) Owner(*Peer) (int, bool, bool) { return 1, false, false }
func (r *memReader) HandOver(*Peer, int) bool      { return false }
func (r *memReader) Accept(*Peer) bool             { return false }
func (r *memReader) Release(*Peer)                 {}

type seen struct{ v atomic.Int64 }

func (s *seen) Touch(now int64) { s.v.Store(now) }

// endpoint is the endpoint side of one association, with pion/srtp.
type endpoint struct {
	peer *Peer
	enc  *srtp.Context // client_write: what the MD opens
	dec  *srtp.Context // server_write: what the MD seals to it
	ssrc uint32
	seq  uint16

	// The client_write master key and salt (enc's).
	clientKey, clientSalt []byte
}

func newEndpoint(t testing.TB, r *rand.Rand, id uint64, addr netip.AddrPort) *endpoint {
	t.Helper()
	ck, cs, sk, ss := make([]byte, 16), make([]byte, 12), make([]byte, 16), make([]byte, 12)
	for _, b := range [][]byte{ck, cs, sk, ss} {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
	recv, err := srtpfast.NewKeys(srtpfast.ProfileAEADAES128GCM, ck, cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	send, err := srtpfast.NewKeys(srtpfast.ProfileAEADAES128GCM, sk, ss, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := srtp.CreateContext(ck, cs, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := srtp.CreateContext(sk, ss, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	return &endpoint{
		peer: &Peer{ID: id, Gen: 1, Addr: addr, Recv: recv, Send: send, Seen: new(seen)},
		enc:  enc, dec: dec, ssrc: 0x1000 + uint32(id), seq: 65530,
		clientKey: ck, clientSalt: cs,
	}
}

// newConference makes n endpoints at addrs, all in one conference of tbl.
func newConference(t testing.TB, tbl *memTable, addrs []netip.AddrPort) []*endpoint {
	r := rand.New(rand.NewPCG(1, uint64(len(addrs))))
	eps := make([]*endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = newEndpoint(t, r, uint64(i+1), a)
		tbl.add(eps[i].peer)
	}
	return eps
}

// rtpPlain returns the next plaintext RTP packet of the endpoint with an
// n-octet payload.
func (e *endpoint) rtpPlain(t testing.TB, n int) []byte {
	t.Helper()
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i) ^ byte(e.seq)
	}
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: e.seq,
		Timestamp: uint32(e.seq) * 960, SSRC: e.ssrc}, Payload: payload}
	e.seq++
	b, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sealRTP returns a plaintext RTP packet and its SRTP form.
func (e *endpoint) sealRTP(t testing.TB, n int) (plain, enc []byte) {
	t.Helper()
	plain = e.rtpPlain(t, n)
	enc, err := e.enc.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return plain, enc
}

// sealRTCP returns a plaintext sender report and its SRTCP form.
func (e *endpoint) sealRTCP(t testing.TB) (plain, enc []byte) {
	t.Helper()
	sr := rtcp.SenderReport{SSRC: e.ssrc, NTPTime: 1 << 40, RTPTime: 1234, PacketCount: 7, OctetCount: 700}
	plain, err := sr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	enc, err = e.enc.EncryptRTCP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return plain, enc
}

// open decrypts what the MD sent to the endpoint, RTP or RTCP by the
// second octet, and compares it with want.
func (e *endpoint) open(t testing.TB, got, want []byte) {
	t.Helper()
	var (
		dec []byte
		err error
	)
	if got[1] >= 192 && got[1] <= 223 {
		dec, err = e.dec.DecryptRTCP(nil, got, nil)
	} else {
		dec, err = e.dec.DecryptRTP(nil, got, nil)
	}
	if err != nil {
		t.Fatalf("endpoint %d: decrypt: %v", e.peer.ID, err)
	}
	if !bytes.Equal(dec, want) {
		t.Fatalf("endpoint %d: plaintext differs:\n got % x\nwant % x", e.peer.ID, dec, want)
	}
}
