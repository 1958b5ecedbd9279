package tunnel

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
)

var testID = uuid.MustParse("0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0")

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Section 7: SupportedProfiles{0, [0x0009, 0x000A]} is 0x0100070000040009000A.
func TestSection7ExampleEncoding(t *testing.T) {
	want := mustHex(t, "0100070000040009000A")
	got, err := AppendMessage(nil, &SupportedProfiles{
		Version:  Version0,
		Profiles: []ProtectionProfile{ProfileDoubleAEADAES128GCM, ProfileDoubleAEADAES256GCM},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encode: got %x, want %x", got, want)
	}
	msg, err := Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	sp, ok := msg.(*SupportedProfiles)
	if !ok {
		t.Fatalf("decode: got %T", msg)
	}
	if sp.Version != 0 || len(sp.Profiles) != 2 || sp.Profiles[0] != 0x0009 || sp.Profiles[1] != 0x000A {
		t.Fatalf("decode: got %+v", sp)
	}
	if sp.Profiles[0].String() != "DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM" {
		t.Fatalf("String: %q", sp.Profiles[0])
	}
}

func sampleMessages() map[string]Message {
	return map[string]Message{
		"SupportedProfiles":  &SupportedProfiles{Version: 0, Profiles: []ProtectionProfile{ProfileAEADAES128GCM, ProfileDoubleAEADAES128GCM}},
		"UnsupportedVersion": &UnsupportedVersion{HighestVersion: 3},
		"MediaKeys": &MediaKeys{
			AssociationID: testID, Profile: ProfileDoubleAEADAES128GCM,
			MKI:                   []byte{0xAA, 0xBB},
			ClientWriteMasterKey:  bytes.Repeat([]byte{1}, 16),
			ServerWriteMasterKey:  bytes.Repeat([]byte{2}, 16),
			ClientWriteMasterSalt: bytes.Repeat([]byte{3}, 12),
			ServerWriteMasterSalt: bytes.Repeat([]byte{4}, 12),
		},
		"MediaKeysNoMKI": &MediaKeys{
			AssociationID: testID, Profile: ProfileAEADAES256GCM,
			ClientWriteMasterKey: bytes.Repeat([]byte{1}, 32), ServerWriteMasterKey: bytes.Repeat([]byte{2}, 32),
			ClientWriteMasterSalt: bytes.Repeat([]byte{3}, 12), ServerWriteMasterSalt: bytes.Repeat([]byte{4}, 12),
		},
		"TunneledDtls":       &TunneledDtls{AssociationID: testID, Message: []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff}},
		"EndpointDisconnect": &EndpointDisconnect{AssociationID: testID},
	}
}

func TestRoundTripEveryType(t *testing.T) {
	for name, m := range sampleMessages() {
		t.Run(name, func(t *testing.T) {
			b, err := AppendMessage([]byte{0xEE}, m) // appends after existing data
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != 0xEE || b[1] != byte(m.Type()) || int(b[2])<<8|int(b[3]) != len(b)-4 {
				t.Fatalf("bad header in %x", b)
			}
			var d Decoder
			got, err := d.Decode(b[1:])
			if err != nil {
				t.Fatal(err)
			}
			again, err := AppendMessage(nil, got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b[1:]) {
				t.Fatalf("re-encode: got %x, want %x", again, b[1:])
			}
		})
	}
}

func TestExactEncodings(t *testing.T) {
	id := "0f1e2d3c4b5a49788796a5b4c3d2e1f0"
	tests := []struct {
		name string
		m    Message
		want string
	}{
		{"UnsupportedVersion", &UnsupportedVersion{HighestVersion: 0}, "02 0001 00"},
		{"EndpointDisconnect", &EndpointDisconnect{AssociationID: testID}, "05 0010" + id},
		{"TunneledDtls", &TunneledDtls{AssociationID: testID, Message: []byte{0x16, 0xfe}}, "04 0014" + id + "0002 16fe"},
		{"MediaKeys", &MediaKeys{AssociationID: testID, Profile: 7, MKI: nil,
			ClientWriteMasterKey: []byte{1}, ServerWriteMasterKey: []byte{2, 2},
			ClientWriteMasterSalt: []byte{3}, ServerWriteMasterSalt: []byte{4}},
			"03 001c" + id + "0007 00 01 01 02 0202 01 03 01 04"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendMessage(nil, tt.m)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(t, tt.want); !bytes.Equal(got, want) {
				t.Fatalf("got %x, want %x", got, want)
			}
		})
	}
}

func TestDecodeBadInputs(t *testing.T) {
	id := "0f1e2d3c4b5a49788796a5b4c3d2e1f0"
	keys := "01 01 01 02 01 03 01 04" // four one-octet keys/salts
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrTruncated},
		{"header only two octets", "01 00", ErrTruncated},
		{"reserved type 0x00", "00 0000", ErrReservedType},
		{"reserved type 0x06", "06 0001 00", ErrReservedType},
		{"reserved type 0xFF", "FF 0000", ErrReservedType},
		{"body shorter than length", "02 0002 00", ErrTruncated},
		{"bytes after frame", "02 0001 00 00", ErrTrailingBytes},
		{"SupportedProfiles empty body", "01 0000", ErrBodyLength},
		{"SupportedProfiles no vector length", "01 0001 00", ErrBodyLength},
		{"SupportedProfiles vector past body", "01 0005 00 0004 0009", ErrBodyLength},
		{"SupportedProfiles bytes after vector", "01 0006 00 0002 0009 00", ErrTrailingBytes},
		{"SupportedProfiles odd vector", "01 0006 00 0003 0009 00", ErrVectorLength},
		{"UnsupportedVersion empty", "02 0000", ErrBodyLength},
		{"UnsupportedVersion long", "02 0002 00 00", ErrTrailingBytes},
		{"EndpointDisconnect short uuid", "05 000f" + id[:30], ErrBodyLength},
		{"EndpointDisconnect long", "05 0011" + id + "00", ErrTrailingBytes},
		{"TunneledDtls short uuid", "04 0010" + id, ErrBodyLength},
		{"TunneledDtls vector past body", "04 0013" + id + "0002 16", ErrBodyLength},
		{"TunneledDtls bytes after vector", "04 0014" + id + "0001 16 16", ErrTrailingBytes},
		{"MediaKeys no profile", "03 0010" + id, ErrBodyLength},
		{"MediaKeys missing mki length", "03 0012" + id + "0007", ErrBodyLength},
		{"MediaKeys mki past body", "03 0014" + id + "0007 05 00", ErrBodyLength},
		{"MediaKeys empty client key", "03 001a" + id + "0007 00 00 01 02 01 03 01 04", ErrVectorLength},
		{"MediaKeys empty server key", "03 001a" + id + "0007 00 01 01 00 01 03 01 04", ErrVectorLength},
		{"MediaKeys empty client salt", "03 001a" + id + "0007 00 01 01 01 02 00 01 04", ErrVectorLength},
		{"MediaKeys empty server salt", "03 001a" + id + "0007 00 01 01 01 02 01 03 00", ErrVectorLength},
		{"MediaKeys missing server salt", "03 0019" + id + "0007 00 01 01 01 02 01 03", ErrBodyLength},
		{"MediaKeys key past body", "03 001b" + id + "0007 00 01 01 01 02 01 03 05 04", ErrBodyLength},
		{"MediaKeys bytes after salts", "03 001c" + id + "0007 00" + keys + "99", ErrTrailingBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := mustHex(t, tt.in)
			var d Decoder
			m, err := d.Decode(in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode(%x) = %v, %v; want %v", in, m, err, tt.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			if m != nil {
				t.Fatalf("message returned with error: %v", m)
			}
		})
	}
}

// Draft -05 allows an empty profile list and an empty dtls_message; RFC
// 9185 forbids sending them. Accept on receive, refuse on send.
func TestAcceptDraft05RefuseRFC9185(t *testing.T) {
	for _, in := range []string{"01 0003 00 0000", "04 0012 0f1e2d3c4b5a49788796a5b4c3d2e1f0 0000"} {
		b := mustHex(t, in)
		m, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(%x): %v", b, err)
		}
		if _, err := AppendMessage(nil, m); !errors.Is(err, ErrNotSendable) {
			t.Fatalf("AppendMessage(%T) = %v, want ErrNotSendable", m, err)
		}
		again, err := appendMessage(nil, m, false)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("lenient re-encode: %x, %v", again, err)
		}
	}
}

func TestEncodeRefusesOutOfBounds(t *testing.T) {
	k := []byte{1}
	long := make([]byte, 256)
	tests := []struct {
		name string
		m    Message
		want error
	}{
		{"empty profiles", &SupportedProfiles{}, ErrNotSendable},
		{"too many profiles", &SupportedProfiles{Profiles: make([]ProtectionProfile, maxProfiles+1)}, ErrFrameTooLarge},
		{"empty dtls", &TunneledDtls{}, ErrNotSendable},
		{"dtls too long", &TunneledDtls{Message: make([]byte, MaxDtlsMessageLen+1)}, ErrFrameTooLarge},
		{"empty client key", &MediaKeys{ServerWriteMasterKey: k, ClientWriteMasterSalt: k, ServerWriteMasterSalt: k}, ErrVectorLength},
		{"empty server salt", &MediaKeys{ClientWriteMasterKey: k, ServerWriteMasterKey: k, ClientWriteMasterSalt: k}, ErrVectorLength},
		{"key too long", &MediaKeys{ClientWriteMasterKey: long, ServerWriteMasterKey: k, ClientWriteMasterSalt: k, ServerWriteMasterSalt: k}, ErrVectorLength},
		{"mki too long", &MediaKeys{MKI: long, ClientWriteMasterKey: k, ServerWriteMasterKey: k, ClientWriteMasterSalt: k, ServerWriteMasterSalt: k}, ErrVectorLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte{9}
			out, err := AppendMessage(dst, tt.m)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if len(out) != 1 {
				t.Fatalf("dst grew on error: %x", out)
			}
		})
	}
	// The largest legal TunneledDtls fits the uint16 length exactly.
	b, err := AppendMessage(nil, &TunneledDtls{Message: make([]byte, MaxDtlsMessageLen)})
	if err != nil || len(b) != MaxFrameSize {
		t.Fatalf("max TunneledDtls: len %d, %v", len(b), err)
	}
}

func TestMUST_5_3_AssociationIDIsRandomUUIDv4(t *testing.T) {
	seen := make(map[uuid.UUID]bool)
	for range 1000 {
		id, err := NewAssociationID()
		if err != nil {
			t.Fatal(err)
		}
		if id.Version() != 4 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("%s: version %d variant %v, want 4 RFC4122", id, id.Version(), id.Variant())
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
}

func TestStrings(t *testing.T) {
	if s := MsgType(0x42).String(); s != "MsgType(0x42)" {
		t.Fatal(s)
	}
	if s := ProtectionProfile(0x1234).String(); s != "ProtectionProfile(0x1234)" {
		t.Fatal(s)
	}
	for p, want := range map[ProtectionProfile]string{1: "SRTP_AES128_CM_HMAC_SHA1_80", 2: "SRTP_AES128_CM_HMAC_SHA1_32", 7: "SRTP_AEAD_AES_128_GCM", 8: "SRTP_AEAD_AES_256_GCM", 10: "DOUBLE_AEAD_AES_256_GCM_AEAD_AES_256_GCM"} {
		if p.String() != want {
			t.Fatalf("%d: %s", p, p)
		}
	}
}

func TestDecodeTunneledDtlsAllocatesNothing(t *testing.T) {
	b, err := AppendMessage(nil, &TunneledDtls{AssociationID: testID, Message: make([]byte, 1200)})
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	allocs := testing.AllocsPerRun(100, func() {
		m, err := d.Decode(b)
		if err != nil || len(m.(*TunneledDtls).Message) != 1200 {
			t.Fatal("decode failed")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per decode, want 0", allocs)
	}
	// The message aliases the input.
	m, _ := d.Decode(b)
	if &m.(*TunneledDtls).Message[0] != &b[HeaderLen+18] {
		t.Fatal("TunneledDtls.Message does not alias the frame")
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		b, err := AppendMessage(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(mustHex(f, "0100070000040009000A"))
	f.Add(mustHex(f, "01 0003 00 0000"))
	f.Add(mustHex(f, "03 001a 0f1e2d3c4b5a49788796a5b4c3d2e1f0 0007 00 00 01 02 01 03 01 04"))
	f.Add([]byte{})
	f.Add([]byte{0x06, 0, 0})
	var d Decoder
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := d.Decode(b)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			return
		}
		out, err := appendMessage(nil, m, false)
		if err != nil {
			t.Fatalf("re-encode of decoded %x: %v", b, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("encode(decode(%x)) = %x", b, out)
		}
		// Strict encoding either round-trips too or refuses for a
		// documented RFC 9185 reason.
		if strict, err := AppendMessage(nil, m); err == nil {
			if !bytes.Equal(strict, b) {
				t.Fatalf("strict encode(decode(%x)) = %x", b, strict)
			}
		} else if !errors.Is(err, ErrNotSendable) {
			t.Fatalf("strict encode of decoded %x: %v", b, err)
		}
		// A framed stream of the input yields the same frame.
		fr := NewFrameReader(bytes.NewReader(b), 0)
		if frame, err := fr.Next(); err != nil || !bytes.Equal(frame, b) {
			t.Fatalf("FrameReader: %x, %v", frame, err)
		}
	})
}

func BenchmarkDecodeTunneledDtls(b *testing.B) {
	for _, size := range []int{100, 1200} {
		buf, err := AppendMessage(nil, &TunneledDtls{AssociationID: testID, Message: make([]byte, size)})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			var d Decoder
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := d.Decode(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeTunneledDtls(b *testing.B) {
	for _, size := range []int{100, 1200} {
		m := &TunneledDtls{AssociationID: testID, Message: make([]byte, size)}
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			dst := make([]byte, 0, MaxFrameSize)
			b.ReportAllocs()
			b.SetBytes(int64(HeaderLen + 18 + size))
			for b.Loop() {
				var err error
				if dst, err = AppendMessage(dst[:0], m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
