package dtlsmsg

import (
	"encoding/binary"
	"math/rand/v2"
)

// helloSpec describes a ClientHello body for tests.
type helloSpec struct {
	version    uint16
	random     [32]byte
	sessionID  []byte
	cookie     []byte
	suites     []uint16
	comp       []byte
	exts       []Extension
	noExtBlock bool
}

func defaultSpec() helloSpec {
	s := helloSpec{
		version: VersionDTLS12,
		suites:  []uint16{0xC02B, 0xC02F, 0xC00A},
		comp:    []byte{0},
	}
	for i := range s.random {
		s.random[i] = byte(i)
	}
	return s
}

func mustESID(id []byte) []byte {
	b, err := AppendExternalSessionID(nil, id)
	if err != nil {
		panic(err)
	}
	return b
}

func mustSRTP(p []uint16, mki []byte) []byte {
	b, err := AppendUseSRTP(nil, p, mki)
	if err != nil {
		panic(err)
	}
	return b
}

func tlsID(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// specWithExtensions is a realistic ClientHello: a few ordinary extensions,
// use_srtp and external_session_id.
func specWithExtensions(id []byte) helloSpec {
	s := defaultSpec()
	s.exts = []Extension{
		{Type: 10, Data: []byte{0, 4, 0, 0x1d, 0, 0x17}},
		{Type: 11, Data: []byte{1, 0}},
		{Type: ExtensionUseSRTP, Data: mustSRTP([]uint16{0x0007, 0x0001}, nil)},
		{Type: 23, Data: nil},
		{Type: ExtensionExternalSessionID, Data: mustESID(id)},
	}
	return s
}

func (s helloSpec) body() []byte {
	b := binary.BigEndian.AppendUint16(nil, s.version)
	b = append(b, s.random[:]...)
	b = append(b, byte(len(s.sessionID)))
	b = append(b, s.sessionID...)
	b = append(b, byte(len(s.cookie)))
	b = append(b, s.cookie...)
	b = binary.BigEndian.AppendUint16(b, uint16(2*len(s.suites)))
	for _, c := range s.suites {
		b = binary.BigEndian.AppendUint16(b, c)
	}
	b = append(b, byte(len(s.comp)))
	b = append(b, s.comp...)
	if s.noExtBlock {
		return b
	}
	var ext []byte
	for _, e := range s.exts {
		var err error
		if ext, err = AppendExtension(ext, e.Type, e.Data); err != nil {
			panic(err)
		}
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(ext)))
	return append(b, ext...)
}

// hsFragment encodes a handshake fragment of body[off:off+n].
func hsFragment(typ uint8, seq uint16, body []byte, off, n int) []byte {
	b := []byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	b = binary.BigEndian.AppendUint16(b, seq)
	b = append(b, byte(off>>16), byte(off>>8), byte(off), byte(n>>16), byte(n>>8), byte(n))
	return append(b, body[off:off+n]...)
}

// record encodes a DTLS 1.2 record.
func record(ct uint8, epoch uint16, seq uint64, payload []byte) []byte {
	b := []byte{ct, 0xFE, 0xFD}
	b = binary.BigEndian.AppendUint16(b, epoch)
	b = append(b, byte(seq>>40), byte(seq>>32), byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq))
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

// hsDatagram is one datagram holding one record holding a whole message.
func hsDatagram(typ uint8, seq uint16, body []byte) []byte {
	return record(ContentTypeHandshake, 0, uint64(seq), hsFragment(typ, seq, body, 0, len(body)))
}

// fragmentize splits a message into overlapping fragments of random sizes,
// puts one or two fragments per record, packs records into datagrams of one
// to three records, and shuffles the datagrams. Every octet is covered.
func fragmentize(rng *rand.Rand, typ uint8, seq uint16, body []byte) [][]byte {
	var frags [][]byte
	for off := 0; off < len(body); {
		n := 1 + rng.IntN(min(60, len(body)-off))
		start := off
		if start > 0 && rng.IntN(3) == 0 { // overlap the previous fragment
			start -= rng.IntN(min(start, 10) + 1)
		}
		frags = append(frags, hsFragment(typ, seq, body, start, off+n-start))
		off += n
	}
	if rng.IntN(2) == 0 && len(frags) > 0 { // a duplicate
		frags = append(frags, frags[rng.IntN(len(frags))])
	}
	rng.Shuffle(len(frags), func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
	var recs [][]byte
	for i, rseq := 0, uint64(0); i < len(frags); rseq++ {
		k := min(1+rng.IntN(2), len(frags)-i)
		var payload []byte
		for _, f := range frags[i : i+k] {
			payload = append(payload, f...)
		}
		recs = append(recs, record(ContentTypeHandshake, 0, rseq, payload))
		i += k
	}
	var dgs [][]byte
	for i := 0; i < len(recs); {
		k := min(1+rng.IntN(3), len(recs)-i)
		var d []byte
		for _, r := range recs[i : i+k] {
			d = append(d, r...)
		}
		dgs = append(dgs, d)
		i += k
	}
	rng.Shuffle(len(dgs), func(i, j int) { dgs[i], dgs[j] = dgs[j], dgs[i] })
	return dgs
}
