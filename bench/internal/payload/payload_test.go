package payload

import (
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{HeaderLen, 160, 1200} {
		b := make([]byte, size)
		in := Info{Stream: 0x4d440003, Seq: 1<<33 + 7, SendNanos: 123456789}
		if err := Fill(b, in); err != nil {
			t.Fatal(err)
		}
		out, err := Check(b)
		if err != nil || out != in {
			t.Fatalf("size %d: Check = %+v, %v; want %+v", size, out, err, in)
		}
		SetSendTime(b, 42)
		if out, err := Check(b); err != nil || out.SendNanos != 42 {
			t.Fatalf("size %d: after SetSendTime: %+v, %v", size, out, err)
		}
	}
}

func TestCheckBad(t *testing.T) {
	good := make([]byte, 160)
	if err := Fill(good, Info{Stream: 1, Seq: 2, SendNanos: 3}); err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x01
		return b
	}
	other := make([]byte, 160)
	_ = Fill(other, Info{Stream: 1, Seq: 3, SendNanos: 3})
	copy(other[:HeaderLen], good[:HeaderLen]) // header of seq 2, filler of seq 3
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short", good[:HeaderLen-1], ErrShort},
		{"magic", flip(0), ErrMagic},
		{"first filler octet", flip(HeaderLen), ErrFiller},
		{"last filler octet", flip(159), ErrFiller},
		{"filler of another packet", other, ErrFiller},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Check(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("Check: %v, want %v", err, tc.want)
			}
		})
	}
	if err := Fill(make([]byte, HeaderLen-1), Info{}); !errors.Is(err, ErrShort) {
		t.Fatalf("Fill short: %v", err)
	}
}

func TestNoAlloc(t *testing.T) {
	b := make([]byte, 1200)
	if n := testing.AllocsPerRun(100, func() {
		_ = Fill(b, Info{Stream: 1, Seq: 9, SendNanos: 5})
		_, _ = Check(b)
	}); n != 0 {
		t.Fatalf("%v allocations per Fill+Check", n)
	}
}
