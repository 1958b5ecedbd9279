package srtpfast

import (
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"
)

// snapshot copies the mutable state of o.
func snapshot(o *Opener) []ssrcState {
	return append([]ssrcState(nil), o.table.states...)
}

func sealRTP(t testing.TB, k *Keys, pkt []byte, roc uint32) []byte {
	t.Helper()
	out, err := k.SealRTP(nil, nil, pkt, roc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func plainRTP(ssrc uint32, seq uint16, payload int) []byte {
	p := make([]byte, 12+payload)
	p[0], p[1] = 0x80, 96
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	return p
}

// TestOpenRTPBad is the table of bad SRTP input: each case names the typed
// error, and the Opener state must not change.
func TestOpenRTPBad(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	k, _, _ := testKeys(t, r, ProfileAEADAES128GCM, nil)
	other, _, _ := testKeys(t, r, ProfileAEADAES128GCM, nil)
	km, _, _ := testKeys(t, r, ProfileAEADAES128GCM, []byte{1, 2, 3, 4})
	const ssrc = 0x11223344

	padded := func(payload int, padLen byte) []byte {
		p := plainRTP(ssrc, 5000, payload)
		p[0] |= 0x20
		if payload > 0 {
			p[len(p)-1] = padLen
		}
		return sealRTP(t, k, p, 0)
	}
	withHdr := func(b0 byte, rest ...byte) []byte {
		p := plainRTP(ssrc, 5000, 0)
		p[0] = b0
		return append(p, rest...)
	}
	cases := []struct {
		name  string
		keys  *Keys
		setup [][]byte // packets opened (successfully) first
		pkt   []byte
		want  error
	}{
		{"empty", k, nil, nil, ErrShort},
		{"short header", k, nil, make([]byte, 11), ErrShort},
		{"no room for tag", k, nil, append(plainRTP(ssrc, 1, 0), make([]byte, 15)...), ErrShort},
		{"version 0", k, nil, withHdr(0x00, make([]byte, 20)...), ErrVersion},
		{"version 1", k, nil, withHdr(0x40, make([]byte, 20)...), ErrVersion},
		{"version 3", k, nil, withHdr(0xc0, make([]byte, 20)...), ErrVersion},
		{"CSRC count past end", k, nil, withHdr(0x8f, make([]byte, 40)...), ErrCSRCOverflow},
		{"extension header past end", k, nil, withHdr(0x90, 0xbe, 0xde), ErrExtensionOverflow},
		{"extension length past end", k, nil, withHdr(0x90, append([]byte{0xbe, 0xde, 0x00, 0x08}, make([]byte, 30)...)...), ErrExtensionOverflow},
		{"CSRC then extension past end", k, nil, withHdr(0x92, append(make([]byte, 8), 0x10, 0x00, 0xff, 0xff)...), ErrExtensionOverflow},
		{"padding count zero", k, nil, padded(10, 0), ErrPadding},
		{"padding longer than payload", k, nil, padded(10, 11), ErrPadding},
		{"padding with empty payload", k, nil, padded(0, 0), ErrPadding},
		{"bad tag", k, nil, func() []byte { p := sealRTP(t, k, plainRTP(ssrc, 1, 20), 0); p[len(p)-1] ^= 0x80; return p }(), ErrAuth},
		{"bad ciphertext", k, nil, func() []byte { p := sealRTP(t, k, plainRTP(ssrc, 1, 20), 0); p[14] ^= 1; return p }(), ErrAuth},
		{"bad header", k, nil, func() []byte { p := sealRTP(t, k, plainRTP(ssrc, 1, 20), 0); p[5] ^= 1; return p }(), ErrAuth},
		{"wrong key", k, nil, sealRTP(t, other, plainRTP(ssrc, 1, 20), 0), ErrAuth},
		{"wrong ROC", k, nil, sealRTP(t, k, plainRTP(ssrc, 1, 20), 1), ErrAuth},
		{"replay", k, [][]byte{sealRTP(t, k, plainRTP(ssrc, 7, 20), 0)}, sealRTP(t, k, plainRTP(ssrc, 7, 20), 0), ErrReplay},
		{"replay in window", k, [][]byte{
			sealRTP(t, k, plainRTP(ssrc, 7, 20), 0), sealRTP(t, k, plainRTP(ssrc, 300, 20), 0),
		}, sealRTP(t, k, plainRTP(ssrc, 7, 20), 0), ErrReplay},
		{"too old", k, [][]byte{
			sealRTP(t, k, plainRTP(ssrc, 7, 20), 0), sealRTP(t, k, plainRTP(ssrc, 7+ReplayWindow, 20), 0),
		}, sealRTP(t, k, plainRTP(ssrc, 6, 20), 0), ErrTooOld},
		{"stale ROC (would be -1)", k, [][]byte{sealRTP(t, k, plainRTP(ssrc, 100, 20), 0)},
			sealRTP(t, k, plainRTP(ssrc, 40000, 20), 0), ErrTooOld},
		{"stale ROC after wrap", k, [][]byte{
			sealRTP(t, k, plainRTP(ssrc, 65500, 20), 0), sealRTP(t, k, plainRTP(ssrc, 20000, 20), 1),
		}, sealRTP(t, k, plainRTP(ssrc, 65400, 20), 0), ErrTooOld},
		{"unknown MKI", km, nil, func() []byte { p := sealRTP(t, km, plainRTP(ssrc, 1, 20), 0); p[len(p)-2] ^= 1; return p }(), ErrUnknownMKI},
		{"no room for MKI and tag", km, nil, append(plainRTP(ssrc, 1, 0), 0, 0, 0, 1, 2, 3, 4), ErrShort},
		{"SSRC limit", k, [][]byte{sealRTP(t, k, plainRTP(1, 1, 20), 0), sealRTP(t, k, plainRTP(2, 1, 20), 0)},
			sealRTP(t, k, plainRTP(3, 1, 20), 0), ErrSSRCLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := NewOpener(c.keys, 2)
			for i, p := range c.setup {
				if _, err := o.OpenRTP(append([]byte(nil), p...)); err != nil {
					t.Fatalf("setup packet %d: %v", i, err)
				}
			}
			before := snapshot(o)
			info, err := o.OpenRTP(c.pkt)
			if err != c.want {
				t.Fatalf("OpenRTP = %+v, %v; want %v", info, err, c.want)
			}
			if info != (RTPInfo{}) {
				t.Fatalf("non-zero info on error: %+v", info)
			}
			if !reflect.DeepEqual(before, snapshot(o)) {
				t.Fatal("Opener state changed on error")
			}
		})
	}
}

// TestReplayWindow walks the window edges and the sequence wrap.
func TestReplayWindow(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	k, _, _ := testKeys(t, r, ProfileAEADAES256GCM, nil)
	o := NewOpener(k, 1)
	open := func(seq uint16, roc uint32) error {
		_, err := o.OpenRTP(sealRTP(t, k, plainRTP(9, seq, 4), roc))
		return err
	}
	steps := []struct {
		seq  uint16
		roc  uint32
		want error
	}{
		{65000, 0, nil},
		{65000, 0, ErrReplay},
		{64999, 0, nil},             // reordered, in window
		{65535, 0, nil},             // up to the wrap
		{3, 1, nil},                 // wrapped: ROC 1
		{65534, 0, nil},             // late packet from before the wrap
		{65534, 0, ErrReplay},       // and its replay
		{3, 1, ErrReplay},           //
		{65000 - 200, 0, ErrTooOld}, // 739 behind the top
		{uint16(3 + 500), 1, nil},   // jump ahead
		{3 + 500 - ReplayWindow, 1, ErrTooOld},
		{3 + 500 - ReplayWindow + 1, 1, nil}, // the oldest still accepted
		{30000, 1, nil},                      // big jump (< 2^15), ring fully cleared
		{30000 - 1, 1, nil},
		{65000, 1, ErrTooOld}, // more than 2^15 ahead reads as ROC 0: stale
	}
	for i, s := range steps {
		if err := open(s.seq, s.roc); err != s.want {
			t.Fatalf("step %d (seq %d roc %d): %v, want %v", i, s.seq, s.roc, err, s.want)
		}
	}
}

func TestEstimateIndex(t *testing.T) {
	for _, c := range []struct {
		top  uint64
		seq  uint16
		want uint64
		err  Error
	}{
		{0x0_0010, 0x0011, 0x0_0011, 0},
		{0x5_0010, 0xfff0, 0x4_fff0, 0}, // late, previous ROC
		{0x0_0010, 0xfff0, 0, ErrTooOld},
		{0x5_fff0, 0x0010, 0x6_0010, 0}, // wrapped
		{0x5_8000, 0x0000, 0x5_0000, 0},
		{0x5_8001, 0x0000, 0x6_0000, 0},
		{0xffffffff_fff0, 0x0001, 0, ErrIndexExhausted},
		{0xffffffff_fff0, 0xfff5, 0xffffffff_fff5, 0},
	} {
		got, err := estimateIndex(c.top, c.seq)
		if got != c.want || err != c.err {
			t.Errorf("estimateIndex(%#x, %#x) = %#x, %v; want %#x, %v", c.top, c.seq, got, err, c.want, c.err)
		}
	}
}

func TestOpenRTCPBad(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	k, _, _ := testKeys(t, r, ProfileAEADAES128GCM, nil)
	km, _, _ := testKeys(t, r, ProfileAEADAES128GCM, []byte{9, 9})
	rtcp := rtcpCompound(r, 0xabcdef01)
	seal := func(k *Keys, pkt []byte, idx uint32) []byte {
		out, err := k.SealRTCP(nil, nil, pkt, idx)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cases := []struct {
		name  string
		keys  *Keys
		setup [][]byte
		pkt   []byte
		want  error
	}{
		{"empty", k, nil, nil, ErrShort},
		{"header only", k, nil, rtcp[:8], ErrShort},
		{"no room for tag and index", k, nil, append(append([]byte(nil), rtcp[:8]...), make([]byte, 19)...), ErrShort},
		{"version", k, nil, func() []byte { p := seal(k, rtcp, 1); p[0] &^= 0x80; return p }(), ErrVersion},
		{"bad tag", k, nil, func() []byte { p := seal(k, rtcp, 1); p[len(p)-5] ^= 1; return p }(), ErrAuth},
		{"bad index", k, nil, func() []byte { p := seal(k, rtcp, 1); p[len(p)-1] ^= 1; return p }(), ErrAuth},
		{"E flag cleared", k, nil, func() []byte { p := seal(k, rtcp, 1); p[len(p)-4] &^= 0x80; return p }(), ErrAuth},
		{"bad header", k, nil, func() []byte { p := seal(k, rtcp, 1); p[1] ^= 1; return p }(), ErrAuth},
		{"replay", k, [][]byte{seal(k, rtcp, 1)}, seal(k, rtcp, 1), ErrReplay},
		{"too old", k, [][]byte{seal(k, rtcp, 1), seal(k, rtcp, 1+ReplayWindow)}, seal(k, rtcp, 1), ErrTooOld},
		{"unknown MKI", km, nil, func() []byte { p := seal(km, rtcp, 1); p[len(p)-1] ^= 1; return p }(), ErrUnknownMKI},
		{"SSRC limit", k, [][]byte{seal(k, rtcpCompound(r, 1), 1)}, seal(k, rtcp, 1), ErrSSRCLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := NewOpener(c.keys, 1)
			for i, p := range c.setup {
				if _, err := o.OpenRTCP(append([]byte(nil), p...)); err != nil {
					t.Fatalf("setup packet %d: %v", i, err)
				}
			}
			before := snapshot(o)
			info, err := o.OpenRTCP(c.pkt)
			if err != c.want || info != (RTCPInfo{}) {
				t.Fatalf("OpenRTCP = %+v, %v; want %v", info, err, c.want)
			}
			if !reflect.DeepEqual(before, snapshot(o)) {
				t.Fatal("Opener state changed on error")
			}
		})
	}
}

func TestSealBad(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	k, _, _ := testKeys(t, r, ProfileAEADAES128GCM, nil)
	var sc Scratch
	p := grow(plainRTP(1, 1, 40), 64)
	if _, err := k.SealRTP(&sc, p[1:1], p, 0); err != ErrOverlap {
		t.Errorf("SealRTP overlapping: %v, want ErrOverlap", err)
	}
	if _, err := k.SealRTP(&sc, nil, p[:11], 0); err != ErrShort {
		t.Errorf("SealRTP short: %v, want ErrShort", err)
	}
	if _, err := k.SealRTP(&sc, nil, []byte{0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0); err != ErrCSRCOverflow {
		t.Errorf("SealRTP CSRC: %v, want ErrCSRCOverflow", err)
	}
	c := grow(rtcpCompound(r, 5), 64)
	if _, err := k.SealRTCP(&sc, nil, c, 1<<31); err != ErrIndexExhausted {
		t.Errorf("SealRTCP index 2^31: %v, want ErrIndexExhausted", err)
	}
	if _, err := k.SealRTCP(&sc, c[4:4], c, 1); err != ErrOverlap {
		t.Errorf("SealRTCP overlapping: %v, want ErrOverlap", err)
	}
	if _, err := k.SealRTCP(&sc, nil, c[:7], 1); err != ErrShort {
		t.Errorf("SealRTCP short: %v, want ErrShort", err)
	}
	c[0] = 0x40
	if _, err := k.SealRTCP(&sc, nil, c, 1); err != ErrVersion {
		t.Errorf("SealRTCP version: %v, want ErrVersion", err)
	}
}

func TestNewKeysBad(t *testing.T) {
	key16, key32, salt := make([]byte, 16), make([]byte, 32), make([]byte, 12)
	for _, c := range []struct {
		name           string
		p              Profile
		key, salt, mki []byte
		want           error
	}{
		{"unsupported", 0x0001, key16, make([]byte, 14), nil, ErrUnsupportedProfile},
		{"short key", ProfileAEADAES256GCM, key16, salt, nil, ErrKeyLength},
		{"long key", ProfileDoubleAEADAES128GCM, key32, salt, nil, ErrKeyLength},
		{"salt", ProfileAEADAES128GCM, key16, make([]byte, 14), nil, ErrKeyLength},
		{"MKI", ProfileAEADAES128GCM, key16, salt, make([]byte, 256), ErrKeyLength},
	} {
		if _, err := NewKeys(c.p, c.key, c.salt, c.mki); !errorsIs(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	k, err := NewKeys(ProfileDoubleAEADAES256GCM, key32, salt, make([]byte, 255))
	if err != nil || k.Profile() != ProfileDoubleAEADAES256GCM || len(k.MKI()) != 255 || k.RTPOverhead() != 16+255 || k.RTCPOverhead() != 20+255 {
		t.Fatalf("NewKeys: %v", err)
	}
}

func TestProfile(t *testing.T) {
	for _, c := range []struct {
		p         Profile
		name      string
		key, salt int
		double    bool
	}{
		{ProfileAEADAES128GCM, "AEAD_AES_128_GCM", 16, 12, false},
		{ProfileAEADAES256GCM, "AEAD_AES_256_GCM", 32, 12, false},
		{ProfileDoubleAEADAES128GCM, "DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM", 16, 12, true},
		{ProfileDoubleAEADAES256GCM, "DOUBLE_AEAD_AES_256_GCM_AEAD_AES_256_GCM", 32, 12, true},
		{0x0001, "Profile(0x0001)", 0, 0, false},
		{0xBEEF, "Profile(0xBEEF)", 0, 0, false},
	} {
		if c.p.String() != c.name || c.p.HBHKeyLen() != c.key || c.p.HBHSaltLen() != c.salt || c.p.IsDouble() != c.double || c.p.Supported() != (c.key != 0) {
			t.Errorf("%#04x: %s %d %d %v", uint16(c.p), c.p, c.p.HBHKeyLen(), c.p.HBHSaltLen(), c.p.IsDouble())
		}
	}
	for e := Error(0); e <= NumErrors; e++ {
		if e.Error() == "" {
			t.Errorf("Error(%d) has no text", e)
		}
	}
}
