package dtlsmsg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
)

func TestParseClientHello(t *testing.T) {
	id := tlsID(32)
	s := specWithExtensions(id)
	s.sessionID = []byte{9, 9, 9}
	s.cookie = bytes.Repeat([]byte{0xC0}, 20)
	s.exts[2].Data = mustSRTP([]uint16{0x0008, 0x0007, 0x0001}, []byte{0xAA, 0xBB})
	ch, err := ParseClientHello(s.body())
	if err != nil {
		t.Fatal(err)
	}
	if ch.Version != VersionDTLS12 || ch.Random != s.random || !bytes.Equal(ch.SessionID, s.sessionID) ||
		!bytes.Equal(ch.Cookie, s.cookie) || !slices.Equal(ch.CipherSuites, s.suites) ||
		!bytes.Equal(ch.CompressionMethods, s.comp) {
		t.Fatalf("fixed fields: %+v", ch)
	}
	if len(ch.Extensions) != len(s.exts) {
		t.Fatalf("%d extensions, want %d", len(ch.Extensions), len(s.exts))
	}
	for i, e := range ch.Extensions {
		if e.Type != s.exts[i].Type || !bytes.Equal(e.Data, s.exts[i].Data) {
			t.Errorf("extension %d = %d %x, want %d %x", i, e.Type, e.Data, s.exts[i].Type, s.exts[i].Data)
		}
	}
	if !ch.HasExternalSessionID || !bytes.Equal(ch.ExternalSessionID, id) {
		t.Errorf("external_session_id = %v %q", ch.HasExternalSessionID, ch.ExternalSessionID)
	}
	if !ch.HasUseSRTP || !slices.Equal(ch.SRTPProfiles, []uint16{8, 7, 1}) || !bytes.Equal(ch.SRTPMKI, []byte{0xAA, 0xBB}) {
		t.Errorf("use_srtp = %v %v %x", ch.HasUseSRTP, ch.SRTPProfiles, ch.SRTPMKI)
	}
}

func TestParseClientHelloAbsentAndBounds(t *testing.T) {
	t.Run("no extension block", func(t *testing.T) {
		s := defaultSpec()
		s.noExtBlock = true
		ch, err := ParseClientHello(s.body())
		if err != nil || ch.HasExternalSessionID || ch.ExternalSessionID != nil || ch.HasUseSRTP || ch.Extensions != nil {
			t.Fatalf("%+v %v", ch, err)
		}
	})
	t.Run("empty extension block", func(t *testing.T) {
		ch, err := ParseClientHello(defaultSpec().body())
		if err != nil || ch.HasExternalSessionID || ch.HasUseSRTP {
			t.Fatalf("%+v %v", ch, err)
		}
	})
	t.Run("other extensions only", func(t *testing.T) {
		s := specWithExtensions(tlsID(20))
		s.exts = slices.DeleteFunc(s.exts, func(e Extension) bool { return e.Type == ExtensionExternalSessionID })
		ch, err := ParseClientHello(s.body())
		if err != nil || ch.HasExternalSessionID || ch.ExternalSessionID != nil || !ch.HasUseSRTP {
			t.Fatalf("%+v %v", ch, err)
		}
	})
	for _, n := range []int{20, 21, 254, 255} {
		ch, err := ParseClientHello(specWithExtensions(tlsID(n)).body())
		if err != nil || !bytes.Equal(ch.ExternalSessionID, tlsID(n)) {
			t.Errorf("id of %d octets: %v", n, err)
		}
	}
}

func TestParseClientHelloBad(t *testing.T) {
	base := func() helloSpec { return specWithExtensions(tlsID(24)) }
	body := func(f func(*helloSpec)) []byte {
		s := base()
		f(&s)
		return s.body()
	}
	setExt := func(typ uint16, data []byte) func(*helloSpec) {
		return func(s *helloSpec) {
			for i := range s.exts {
				if s.exts[i].Type == typ {
					s.exts[i].Data = data
				}
			}
		}
	}
	good := base().body()
	// Offsets in good: version 0, random 2, session_id length 34, cookie
	// length 35, cipher_suites length 36.
	patch := func(off int, v ...byte) []byte {
		b := append([]byte{}, good...)
		copy(b[off:], v)
		return b
	}
	extStart := 2 + 32 + 1 + 1 + 2 + 6 + 1 + 1 // offset of the extensions length
	noExt := defaultSpec()
	noExt.noExtBlock = true
	withBlock := func(block ...byte) []byte { return append(noExt.body(), block...) }

	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrBadLength},
		{"random cut", good[:33], ErrBadLength},
		{"no session_id length", good[:34], ErrBadLength},
		{"tls version", patch(0, 0x03, 0x03), ErrBadVersion},
		{"session_id over 32", body(func(s *helloSpec) { s.sessionID = make([]byte, 33) }), ErrBadLength},
		{"session_id past end", patch(34, 0xFF), ErrBadLength},
		{"cookie past end", patch(35, 0xFF), ErrBadLength},
		{"cipher_suites empty", body(func(s *helloSpec) { s.suites = nil }), ErrBadLength},
		{"cipher_suites odd", patch(36, 0, 5), ErrBadLength},
		{"cipher_suites past end", patch(36, 0xFF, 0xFE), ErrBadLength},
		{"cipher_suites length cut", good[:37], ErrBadLength},
		{"no compression method", body(func(s *helloSpec) { s.comp = nil }), ErrBadLength},
		{"compression past end", patch(44, 0xFF), ErrBadLength},
		{"no compression length", good[:44], ErrBadLength},
		{"one octet after compression", good[:extStart+1], ErrBadLength},
		{"extensions length too long", patch(extStart, 0xFF, 0xFF), ErrBadLength},
		{"extensions length too short", patch(extStart, 0, 1), ErrBadLength},
		{"trailing octet", append(append([]byte{}, good...), 0), ErrBadLength},
		{"extension header cut", withBlock(0, 3, 0, 10, 0), ErrBadLength},
		{"extension data past block", withBlock(0, 5, 0, 10, 0, 2, 0), ErrBadLength},
		{"duplicate extension", body(func(s *helloSpec) { s.exts = append(s.exts, Extension{Type: 11, Data: []byte{1, 0}}) }), ErrDuplicateExtension},
		{"duplicate use_srtp", body(func(s *helloSpec) { s.exts = append(s.exts, s.exts[2]) }), ErrDuplicateExtension},
		{"duplicate external_session_id", body(func(s *helloSpec) { s.exts = append(s.exts, s.exts[4]) }), ErrDuplicateExtension},
		{"external_session_id 19 octets", body(setExt(56, append([]byte{19}, tlsID(19)...))), ErrBadExternalSessionID},
		{"external_session_id 0 octets", body(setExt(56, []byte{0})), ErrBadExternalSessionID},
		{"external_session_id empty data", body(setExt(56, nil)), ErrBadExternalSessionID},
		{"external_session_id trailing", body(setExt(56, append(mustESID(tlsID(20)), 0))), ErrBadExternalSessionID},
		{"external_session_id short", body(setExt(56, mustESID(tlsID(21))[:21])), ErrBadExternalSessionID},
		{"use_srtp empty data", body(setExt(14, nil)), ErrBadUseSRTP},
		{"use_srtp one octet", body(setExt(14, []byte{0})), ErrBadUseSRTP},
		{"use_srtp no profiles", body(setExt(14, []byte{0, 0, 0})), ErrBadUseSRTP},
		{"use_srtp odd profiles", body(setExt(14, []byte{0, 3, 0, 1, 0, 0})), ErrBadUseSRTP},
		{"use_srtp no mki length", body(setExt(14, []byte{0, 2, 0, 1})), ErrBadUseSRTP},
		{"use_srtp profiles past end", body(setExt(14, []byte{0, 8, 0, 1, 0})), ErrBadUseSRTP},
		{"use_srtp mki past end", body(setExt(14, []byte{0, 2, 0, 1, 3, 1})), ErrBadUseSRTP},
		{"use_srtp trailing", body(setExt(14, []byte{0, 2, 0, 1, 0, 0})), ErrBadUseSRTP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := ParseClientHello(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if ch != nil {
				t.Fatal("non-nil ClientHello with an error")
			}
		})
	}
}

// TestParseClientHelloMatchesPion cross-checks the parser against pion's
// encoder and decoder.
func TestParseClientHelloMatchesPion(t *testing.T) {
	m := &handshake.MessageClientHello{
		Version:            protocol.Version1_2,
		Random:             handshake.Random{RandomBytes: [28]byte{1, 2, 3}},
		SessionID:          []byte{1, 2},
		Cookie:             bytes.Repeat([]byte{7}, 20),
		CipherSuiteIDs:     []uint16{0xC02B, 0xC0AE, 0xC02F},
		CompressionMethods: []*protocol.CompressionMethod{{ID: 0}},
		Extensions: []extension.Extension{
			&extension.SupportedEllipticCurves{EllipticCurves: nil},
			&extension.UseSRTP{ProtectionProfiles: []extension.SRTPProtectionProfile{7, 1}, MasterKeyIdentifier: []byte{5}},
			&extension.UseExtendedMasterSecret{Supported: true},
			&extension.RenegotiationInfo{RenegotiatedConnection: 0},
		},
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := ParseClientHello(raw)
	if err != nil {
		t.Fatal(err)
	}
	var back handshake.MessageClientHello
	if err := back.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	r := back.Random.MarshalFixed()
	if ch.Random != r || !bytes.Equal(ch.SessionID, back.SessionID) || !bytes.Equal(ch.Cookie, back.Cookie) ||
		!slices.Equal(ch.CipherSuites, back.CipherSuiteIDs) || ch.Version != 0xFEFD {
		t.Fatalf("fixed fields differ from pion: %+v vs %+v", ch, back)
	}
	if len(ch.Extensions) != len(back.Extensions) {
		t.Fatalf("%d extensions, pion %d", len(ch.Extensions), len(back.Extensions))
	}
	for i, e := range back.Extensions {
		if uint16(e.TypeValue()) != ch.Extensions[i].Type {
			t.Errorf("extension %d: type %d, pion %d", i, ch.Extensions[i].Type, e.TypeValue())
		}
	}
	if !ch.HasUseSRTP || !slices.Equal(ch.SRTPProfiles, []uint16{7, 1}) || !bytes.Equal(ch.SRTPMKI, []byte{5}) {
		t.Fatalf("use_srtp = %v %v %x", ch.HasUseSRTP, ch.SRTPProfiles, ch.SRTPMKI)
	}
	if ch.HasExternalSessionID {
		t.Fatal("external_session_id reported but not sent")
	}

	// And the other way: what this package builds, pion accepts.
	s := specWithExtensions(tlsID(30))
	var fromUs handshake.MessageClientHello
	if err := fromUs.Unmarshal(s.body()); err != nil {
		t.Fatalf("pion rejects our ClientHello: %v", err)
	}
	for _, e := range fromUs.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok {
			if len(u.ProtectionProfiles) != 2 || u.ProtectionProfiles[0] != 7 || u.ProtectionProfiles[1] != 1 {
				t.Fatalf("pion reads our use_srtp as %v", u.ProtectionProfiles)
			}
		}
	}
}

func TestParseServerHello(t *testing.T) {
	suite := uint16(0xC02B)
	m := &handshake.MessageServerHello{
		Version:           protocol.Version1_2,
		Random:            handshake.Random{RandomBytes: [28]byte{9}},
		SessionID:         []byte{1},
		CipherSuiteID:     &suite,
		CompressionMethod: &protocol.CompressionMethod{ID: 0},
		Extensions: []extension.Extension{
			&extension.UseSRTP{ProtectionProfiles: []extension.SRTPProtectionProfile{7}},
			&extension.UseExtendedMasterSecret{Supported: true},
		},
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	id := tlsID(40)
	esid, err := AppendExtension(nil, ExtensionExternalSessionID, mustESID(id))
	if err != nil {
		t.Fatal(err)
	}
	// Append the extension to pion's extension block.
	raw = append(raw, esid...)
	extOff := 2 + 32 + 1 + 1 + 2 + 1
	binary.BigEndian.PutUint16(raw[extOff:], uint16(len(raw)-extOff-2))

	sh, err := ParseServerHello(raw)
	if err != nil {
		t.Fatal(err)
	}
	if sh.CipherSuite != suite || sh.CompressionMethod != 0 || !bytes.Equal(sh.SessionID, []byte{1}) ||
		!sh.HasUseSRTP || !slices.Equal(sh.SRTPProfiles, []uint16{7}) || sh.SRTPMKI != nil ||
		!sh.HasExternalSessionID || !bytes.Equal(sh.ExternalSessionID, id) || len(sh.Extensions) != 3 {
		t.Fatalf("%+v", sh)
	}

	msg := append(hsFragment(HandshakeTypeServerHello, 1, raw, 0, len(raw)), []byte{}...)
	if sh, err = ParseServerHelloMessage(msg); err != nil || sh.MessageSeq != 1 {
		t.Fatalf("ParseServerHelloMessage: %v %v", sh, err)
	}

	noExt := raw[:extOff]
	if sh, err = ParseServerHello(noExt); err != nil || sh.HasUseSRTP || sh.HasExternalSessionID {
		t.Fatalf("without extensions: %+v %v", sh, err)
	}

	bad := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrBadLength},
		{"no cipher suite", raw[:36], ErrBadLength},
		{"no compression", raw[:extOff-1], ErrBadLength},
		{"tls version", append([]byte{3, 3}, raw[2:]...), ErrBadVersion},
		{"session_id over 32", func() []byte {
			b := append([]byte{}, raw[:34]...)
			b = append(b, 33)
			b = append(b, make([]byte, 33)...)
			return append(b, raw[36:]...)
		}(), ErrBadLength},
		{"two srtp profiles", func() []byte {
			b := append([]byte{}, raw[:extOff]...)
			var ext []byte
			ext, _ = AppendExtension(ext, ExtensionUseSRTP, mustSRTP([]uint16{7, 1}, nil))
			b = binary.BigEndian.AppendUint16(b, uint16(len(ext)))
			return append(b, ext...)
		}(), ErrBadUseSRTP},
		{"duplicate", func() []byte {
			b := append([]byte{}, raw...)
			b = append(b, esid...)
			binary.BigEndian.PutUint16(b[extOff:], uint16(len(b)-extOff-2))
			return b
		}(), ErrDuplicateExtension},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if sh, err := ParseServerHello(tt.in); !errors.Is(err, tt.want) || sh != nil {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseClientHelloMessage(t *testing.T) {
	body := specWithExtensions(tlsID(20)).body()
	whole := hsFragment(HandshakeTypeClientHello, 1, body, 0, len(body))
	ch, err := ParseClientHelloMessage(whole)
	if err != nil || ch.MessageSeq != 1 || !ch.HasExternalSessionID {
		t.Fatalf("%+v %v", ch, err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"server hello", hsFragment(HandshakeTypeServerHello, 0, body, 0, len(body)), ErrNotClientHello},
		{"first fragment", hsFragment(HandshakeTypeClientHello, 0, body, 0, 10), ErrBadFragment},
		{"last fragment", hsFragment(HandshakeTypeClientHello, 0, body, 10, len(body)-10), ErrBadFragment},
		{"trailing", append(append([]byte{}, whole...), 0), ErrBadFragment},
		{"short", whole[:5], ErrShortHandshake},
		{"bad body", hsFragment(HandshakeTypeClientHello, 0, body[:40], 0, 40), ErrBadLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ch, err := ParseClientHelloMessage(tt.in); !errors.Is(err, tt.want) || ch != nil {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := ParseServerHelloMessage(whole); !errors.Is(err, ErrNotServerHello) {
		t.Fatalf("ParseServerHelloMessage(ClientHello) = %v", err)
	}
}

func TestAppendHelpers(t *testing.T) {
	id := tlsID(20)
	b, err := AppendExternalSessionID([]byte{0xEE}, id)
	if err != nil || b[0] != 0xEE || b[1] != 20 || !bytes.Equal(b[2:], id) {
		t.Fatalf("AppendExternalSessionID = %x %v", b, err)
	}
	if got, err := ParseExternalSessionID(b[1:]); err != nil || !bytes.Equal(got, id) {
		t.Fatalf("round trip = %q %v", got, err)
	}
	for _, n := range []int{0, 19, 256} {
		if b, err := AppendExternalSessionID([]byte{1}, tlsID(n)); !errors.Is(err, ErrBadExternalSessionID) || !bytes.Equal(b, []byte{1}) {
			t.Errorf("id of %d octets: %x %v", n, b, err)
		}
	}

	s, err := AppendUseSRTP(nil, []uint16{7, 1}, []byte{9})
	if err != nil || !bytes.Equal(s, []byte{0, 4, 0, 7, 0, 1, 1, 9}) {
		t.Fatalf("AppendUseSRTP = %x %v", s, err)
	}
	if p, mki, err := ParseUseSRTP(s); err != nil || !slices.Equal(p, []uint16{7, 1}) || !bytes.Equal(mki, []byte{9}) {
		t.Fatalf("round trip = %v %x %v", p, mki, err)
	}
	if _, err := AppendUseSRTP(nil, nil, nil); !errors.Is(err, ErrBadUseSRTP) {
		t.Errorf("no profiles: %v", err)
	}
	if _, err := AppendUseSRTP(nil, make([]uint16, 0x8000), nil); !errors.Is(err, ErrBadUseSRTP) {
		t.Errorf("too many profiles: %v", err)
	}
	if _, err := AppendUseSRTP(nil, []uint16{1}, make([]byte, 256)); !errors.Is(err, ErrBadUseSRTP) {
		t.Errorf("long MKI: %v", err)
	}

	e, err := AppendExtension(nil, 56, []byte{1, 2})
	if err != nil || !bytes.Equal(e, []byte{0, 56, 0, 2, 1, 2}) {
		t.Fatalf("AppendExtension = %x %v", e, err)
	}
	if _, err := AppendExtension(nil, 1, make([]byte, 0x10000)); !errors.Is(err, ErrBadLength) {
		t.Errorf("long extension: %v", err)
	}
}
