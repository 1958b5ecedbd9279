package keydist

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func TestSplitKeyingMaterial(t *testing.T) {
	for _, tc := range []struct {
		name        string
		profile     uint16
		keyL, saltL int
	}{
		{"AES128_CM_SHA1_80", ProfileAES128CMSHA180, 16, 14},
		{"AES128_CM_SHA1_32", ProfileAES128CMSHA132, 16, 14},
		{"AEAD_AES_128_GCM", ProfileAEADAES128GCM, 16, 12},
		{"AEAD_AES_256_GCM", ProfileAEADAES256GCM, 32, 12},
		{"DOUBLE_128", ProfileDoubleAES128GCM, 32, 24},
		{"DOUBLE_256", ProfileDoubleAES256GCM, 64, 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kl, sl, ok := ProfileKeyLengths(tc.profile)
			if !ok || kl != tc.keyL || sl != tc.saltL {
				t.Fatalf("lengths = %d/%d/%v, want %d/%d", kl, sl, ok, tc.keyL, tc.saltL)
			}
			m := seq(2*(kl+sl), 0)
			km, err := SplitKeyingMaterial(tc.profile, m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(km.ClientKey, m[:kl]) || !bytes.Equal(km.ServerKey, m[kl:2*kl]) ||
				!bytes.Equal(km.ClientSalt, m[2*kl:2*kl+sl]) || !bytes.Equal(km.ServerSalt, m[2*kl+sl:]) {
				t.Fatal("layout is not client_key|server_key|client_salt|server_salt")
			}
			if _, err := SplitKeyingMaterial(tc.profile, m[1:]); !errors.Is(err, ErrKeyingMaterialLength) {
				t.Fatalf("short material: err = %v", err)
			}
			km.Zero()
			if !bytes.Equal(m, make([]byte, len(m))) {
				t.Fatal("Zero left key material")
			}
		})
	}
	if _, err := SplitKeyingMaterial(0x0003, nil); !errors.Is(err, ErrUnknownProfile) {
		t.Fatalf("unknown profile: err = %v", err)
	}
}

// TestSplitDouble checks RFC 8723 section 5.2 on known material: the first
// half of each key and salt is inner (E2E), the second half outer (HBH), and
// only the outer halves are HopByHop.
func TestSplitDouble(t *testing.T) {
	// 0x0009: keys 32 (16+16), salts 24 (12+12).
	m := seq(2*(32+24), 0x10)
	km, err := SplitKeyingMaterial(ProfileDoubleAES128GCM, m)
	if err != nil {
		t.Fatal(err)
	}
	inner, outer, err := km.SplitDouble()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2][]byte{ // name: {inner, outer}
		"client key":  {m[0:16], m[16:32]},
		"server key":  {m[32:48], m[48:64]},
		"client salt": {m[64:76], m[76:88]},
		"server salt": {m[88:100], m[100:112]},
	}
	got := map[string][2][]byte{
		"client key":  {inner.ClientKey, outer.ClientKey},
		"server key":  {inner.ServerKey, outer.ServerKey},
		"client salt": {inner.ClientSalt, outer.ClientSalt},
		"server salt": {inner.ServerSalt, outer.ServerSalt},
	}
	for name, w := range want {
		if !bytes.Equal(got[name][0], w[0]) || !bytes.Equal(got[name][1], w[1]) {
			t.Errorf("%s: inner %x outer %x, want %x %x", name, got[name][0], got[name][1], w[0], w[1])
		}
	}
	hbh := km.HopByHop()
	if !bytes.Equal(hbh.ServerKey, m[48:64]) || len(hbh.ClientKey) != 16 || len(hbh.ClientSalt) != 12 {
		t.Fatalf("HopByHop is not the outer half: %v", hbh)
	}
	// 0x000A: keys 64 (32+32).
	m2 := seq(2*(64+24), 0)
	km2, _ := SplitKeyingMaterial(ProfileDoubleAES256GCM, m2)
	hbh2 := km2.HopByHop()
	if !bytes.Equal(hbh2.ClientKey, m2[32:64]) || !bytes.Equal(hbh2.ServerSalt, m2[2*64+24+12:]) {
		t.Fatal("0x000A outer halves wrong")
	}
	single, _ := SplitKeyingMaterial(ProfileAEADAES128GCM, seq(56, 0))
	if _, _, err := single.SplitDouble(); !errors.Is(err, ErrNotDouble) {
		t.Fatalf("SplitDouble on single profile: err = %v", err)
	}
	if single.HopByHop() != single {
		t.Fatal("HopByHop of a single profile must be the whole material")
	}
	if s := km.String(); bytes.Contains([]byte(s), []byte("10111213")) {
		t.Fatal("String leaks key material")
	}
}

func TestIntersectProfiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		offer []uint16
		md    []uint16
		kd    []uint16
		want  []uint16
	}{
		{"endpoint order kept", []uint16{8, 7, 1}, []uint16{1, 7, 8}, DefaultProfiles, []uint16{8, 7, 1}},
		{"md restricts", []uint16{8, 7, 1}, []uint16{7}, DefaultProfiles, []uint16{7}},
		{"double negotiable", []uint16{9, 7}, []uint16{9, 7}, DefaultProfiles, []uint16{9, 7}},
		{"double not offered by the MD", []uint16{9, 7}, []uint16{7}, DefaultProfiles, []uint16{7}},
		{"empty", []uint16{1}, []uint16{7, 8}, DefaultProfiles, nil},
		{"duplicates", []uint16{7, 7, 8}, []uint16{7, 8}, DefaultProfiles, []uint16{7, 8}},
		{"unknown offered", []uint16{0xFFFF, 3}, []uint16{7}, DefaultProfiles, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := intersectProfiles(tc.offer, tc.md, tc.kd); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
