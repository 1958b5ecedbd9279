package dtlsmsg

import (
	"bytes"
	"errors"
	"testing"
)

func TestIsDTLS(t *testing.T) {
	for b := range 256 {
		want := b >= 20 && b <= 63
		if got := IsDTLS(byte(b)); got != want {
			t.Errorf("IsDTLS(%d) = %v, want %v", b, got, want)
		}
	}
}

func TestNextRecord(t *testing.T) {
	r1 := record(ContentTypeHandshake, 0, 0x0102030405, []byte{1, 2, 3})
	r2 := record(ContentTypeAlert, 1, 0xFFFFFFFFFFFF, nil)
	dg := append(append([]byte{}, r1...), r2...)

	rec, rest, err := NextRecord(dg)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ContentType != ContentTypeHandshake || rec.Version != VersionDTLS12 || rec.Epoch != 0 ||
		rec.Sequence != 0x0102030405 || !bytes.Equal(rec.Fragment, []byte{1, 2, 3}) {
		t.Fatalf("first record = %+v", rec)
	}
	if cap(rec.Fragment) != 3 {
		t.Errorf("fragment capacity %d, want 3 (appending must not overwrite the datagram)", cap(rec.Fragment))
	}
	rec, rest, err = NextRecord(rest)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ContentType != ContentTypeAlert || rec.Epoch != 1 || rec.Sequence != 0xFFFFFFFFFFFF || len(rec.Fragment) != 0 {
		t.Fatalf("second record = %+v", rec)
	}
	if len(rest) != 0 {
		t.Fatalf("rest = %x", rest)
	}
}

func TestNextRecordBad(t *testing.T) {
	good := record(ContentTypeHandshake, 0, 1, []byte{1, 2, 3, 4})
	with := func(i int, v byte) []byte {
		b := append([]byte{}, good...)
		b[i] = v
		return b
	}
	tooLong := record(ContentTypeHandshake, 0, 1, make([]byte, MaxRecordLen+1))
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShortRecord},
		{"stun first octet", with(0, 0), ErrNotDTLS},
		{"first octet 19", with(0, 19), ErrNotDTLS},
		{"first octet 64", with(0, 64), ErrNotDTLS},
		{"rtp first octet", with(0, 0x80), ErrNotDTLS},
		{"tls12_cid", with(0, ContentTypeTLS12CID), ErrUnsupportedRecord},
		{"dtls13 unified header", with(0, 0x2F), ErrUnsupportedRecord},
		{"dtls13 unified header 63", with(0, 63), ErrUnsupportedRecord},
		{"one octet", good[:1], ErrShortRecord},
		{"header cut", good[:RecordHeaderLen-1], ErrShortRecord},
		{"fragment cut", good[:len(good)-1], ErrShortRecord},
		{"tls version", with(1, 0x03), ErrBadVersion},
		{"length above limit", tooLong, ErrBadLength},
		{"length 0xffff", with(11, 0xFF), ErrBadLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rest, err := NextRecord(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if rest != nil {
				t.Fatalf("rest = %x on error", rest)
			}
		})
	}
}

func TestNextRecordAllocs(t *testing.T) {
	dg := append(record(ContentTypeHandshake, 0, 1, make([]byte, 100)), record(23, 1, 2, make([]byte, 50))...)
	bad := []byte{22, 0xFE}
	allocs := testing.AllocsPerRun(100, func() {
		for rest := dg; len(rest) > 0; {
			var err error
			if _, rest, err = NextRecord(rest); err != nil {
				panic(err)
			}
		}
		_, _, _ = NextRecord(bad)
	})
	if allocs != 0 {
		t.Fatalf("NextRecord allocates %v times per run", allocs)
	}
}

func TestNextHandshake(t *testing.T) {
	body := []byte("0123456789")
	two := append(hsFragment(1, 0, body, 0, 4), hsFragment(1, 0, body, 4, 6)...)
	h, frag, rest, err := NextHandshake(two)
	if err != nil || h.Type != 1 || h.Length != 10 || h.FragmentOffset != 0 || h.FragmentLength != 4 || string(frag) != "0123" {
		t.Fatalf("first = %+v %q %v", h, frag, err)
	}
	h, frag, rest, err = NextHandshake(rest)
	if err != nil || h.FragmentOffset != 4 || string(frag) != "456789" || len(rest) != 0 {
		t.Fatalf("second = %+v %q %x %v", h, frag, rest, err)
	}

	outside := hsFragment(1, 0, body, 4, 6)
	outside[8] = 5 // offset 5 + 6 > 10
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShortHandshake},
		{"header cut", two[:11], ErrShortHandshake},
		{"fragment cut", two[:15], ErrShortHandshake},
		{"fragment outside message", outside, ErrBadFragment},
		{"huge fragment length", []byte{1, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF}, ErrShortHandshake},
		{"huge offset", []byte{1, 0, 0, 1, 0, 0, 0xFF, 0xFF, 0xFF, 0, 0, 1, 0}, ErrBadFragment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := NextHandshake(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
