package dtlsmsg

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// reencode rebuilds a ClientHello body from its parsed fields.
func reencode(ch *ClientHello, extBlock bool) []byte {
	b := binary.BigEndian.AppendUint16(nil, ch.Version)
	b = append(b, ch.Random[:]...)
	b = append(b, byte(len(ch.SessionID)))
	b = append(b, ch.SessionID...)
	b = append(b, byte(len(ch.Cookie)))
	b = append(b, ch.Cookie...)
	b = binary.BigEndian.AppendUint16(b, uint16(2*len(ch.CipherSuites)))
	for _, c := range ch.CipherSuites {
		b = binary.BigEndian.AppendUint16(b, c)
	}
	b = append(b, byte(len(ch.CompressionMethods)))
	b = append(b, ch.CompressionMethods...)
	if !extBlock {
		return b
	}
	var ext []byte
	for _, e := range ch.Extensions {
		ext, _ = AppendExtension(ext, e.Type, e.Data)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(ext)))
	return append(b, ext...)
}

func FuzzParseClientHello(f *testing.F) {
	f.Add(specWithExtensions(tlsID(20)).body())
	f.Add(specWithExtensions(tlsID(255)).body())
	f.Add(defaultSpec().body())
	s := defaultSpec()
	s.noExtBlock = true
	f.Add(s.body())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		ch, err := ParseClientHello(body)
		if err != nil {
			if ch != nil {
				t.Fatal("ClientHello with an error")
			}
			return
		}
		// A successful parse accounts for every octet.
		if !bytes.Equal(reencode(ch, true), body) && !bytes.Equal(reencode(ch, false), body) {
			t.Fatalf("re-encoding differs:\n in %x", body)
		}
		if ch.HasExternalSessionID != (ch.ExternalSessionID != nil) ||
			ch.HasExternalSessionID && (len(ch.ExternalSessionID) < 20 || len(ch.ExternalSessionID) > 255) {
			t.Fatalf("external_session_id %v %x", ch.HasExternalSessionID, ch.ExternalSessionID)
		}
		if ch.HasUseSRTP != (len(ch.SRTPProfiles) > 0) {
			t.Fatalf("use_srtp %v %v", ch.HasUseSRTP, ch.SRTPProfiles)
		}
		if len(ch.SessionID) > 32 || len(ch.CipherSuites) == 0 || len(ch.CompressionMethods) == 0 {
			t.Fatalf("bounds: %+v", ch)
		}
		// ParseServerHello must not panic on the same octets.
		_, _ = ParseServerHello(body)
	})
}

func FuzzParseServerHello(f *testing.F) {
	var ext []byte
	ext, _ = AppendExtension(ext, ExtensionUseSRTP, mustSRTP([]uint16{7}, []byte{1}))
	ext, _ = AppendExtension(ext, ExtensionExternalSessionID, mustESID(tlsID(20)))
	body := append([]byte{0xFE, 0xFD}, make([]byte, 32)...)
	body = append(body, 0, 0xC0, 0x2B, 0, byte(len(ext)>>8), byte(len(ext)))
	f.Add(append(body, ext...))
	f.Fuzz(func(t *testing.T, body []byte) {
		sh, err := ParseServerHello(body)
		if err == nil && sh.HasUseSRTP && len(sh.SRTPProfiles) != 1 {
			t.Fatalf("use_srtp with %d profiles accepted", len(sh.SRTPProfiles))
		}
	})
}

// FuzzReassembler feeds a sequence of datagrams: the input is split at
// two-octet length prefixes. It checks that nothing panics, that memory stays
// within the limit, and that what is yielded is well formed.
func FuzzReassembler(f *testing.F) {
	join := func(dgs [][]byte) []byte {
		var b []byte
		for _, d := range dgs {
			b = binary.BigEndian.AppendUint16(b, uint16(len(d)))
			b = append(b, d...)
		}
		return b
	}
	body := specWithExtensions(tlsID(24)).body()
	f.Add(join([][]byte{hsDatagram(1, 0, body)}))
	f.Add(join(fragmentize(rand.New(rand.NewPCG(1, 2)), 1, 0, body)))
	f.Add(join(append(fragmentize(rand.New(rand.NewPCG(3, 4)), 1, 0, body),
		fragmentize(rand.New(rand.NewPCG(5, 6)), 1, 1, body)...)))
	const maxLen = 1024
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReassembler(maxLen)
		sr := NewServerHelloReassembler(maxLen)
		lastSeq := -1
		for len(in) >= 2 {
			n := min(int(binary.BigEndian.Uint16(in)), len(in)-2)
			d := in[2 : 2+n]
			in = in[2+n:]
			ch, err := r.Feed(d)
			if ch != nil {
				if err != nil {
					t.Fatal("ClientHello with an error")
				}
				if int(ch.MessageSeq) <= lastSeq {
					t.Fatalf("message_seq %d yielded after %d", ch.MessageSeq, lastSeq)
				}
				lastSeq = int(ch.MessageSeq)
				if ch.HasExternalSessionID && (len(ch.ExternalSessionID) < 20 || len(ch.ExternalSessionID) > 255) {
					t.Fatalf("external_session_id of %d octets", len(ch.ExternalSessionID))
				}
			}
			_, _ = sr.Feed(d)
			if cap(r.a.buf) > maxLen || cap(r.a.have) > maxLen/8+1 || cap(sr.a.buf) > maxLen {
				t.Fatalf("buffers %d %d %d above the limit", cap(r.a.buf), cap(r.a.have), cap(sr.a.buf))
			}
		}
	})
}
