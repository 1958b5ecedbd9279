package srtpfast

import (
	"bytes"
	"testing"
)

// TestKeysSame: keys built from the same octets are the Same, whatever
// the copy; any difference in profile, master key, master salt or MKI
// makes them differ; nil is never the same.
func TestKeysSame(t *testing.T) {
	key := bytes.Repeat([]byte{0x11}, 16)
	salt := bytes.Repeat([]byte{0x22}, 12)
	build := func(p Profile, key, salt, mki []byte) *Keys {
		t.Helper()
		k, err := NewKeys(p, key, salt, mki)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a := build(ProfileAEADAES128GCM, key, salt, nil)
	if !a.Same(build(ProfileAEADAES128GCM, bytes.Clone(key), bytes.Clone(salt), nil)) {
		t.Fatal("keys built from the same octets are not the Same")
	}
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 1; return c }
	for name, o := range map[string]*Keys{
		"master key":  build(ProfileAEADAES128GCM, flip(key, 15), salt, nil),
		"master salt": build(ProfileAEADAES128GCM, key, flip(salt, 0), nil),
		"MKI":         build(ProfileAEADAES128GCM, key, salt, []byte{0}),
		"profile":     build(ProfileDoubleAEADAES128GCM, key, salt, nil),
		"AES-256":     build(ProfileAEADAES256GCM, bytes.Repeat([]byte{0x11}, 32), salt, nil),
	} {
		if a.Same(o) || o.Same(a) {
			t.Errorf("keys differing in %s are the Same", name)
		}
	}
	withMKI := build(ProfileAEADAES128GCM, key, salt, []byte{1, 2})
	if !withMKI.Same(build(ProfileAEADAES128GCM, key, salt, []byte{1, 2})) || withMKI.Same(build(ProfileAEADAES128GCM, key, salt, []byte{1, 3})) {
		t.Error("MKI not compared")
	}
	var none *Keys
	if a.Same(nil) || none.Same(a) || none.Same(nil) {
		t.Error("nil keys are the Same as something")
	}
}
