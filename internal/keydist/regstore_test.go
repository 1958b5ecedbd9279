package keydist

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestRegistryValuesBadInput: registry values read from the store are
// checked against their keys and validated like API input.
func TestRegistryValuesBadInput(t *testing.T) {
	m := &regMirror{s: &Store{prefix: "/p/"}}
	fp := Fingerprint{1, 2, 3}
	tlsID := NewTLSID()
	id := entryID(tlsID, fp)
	good := `{"conference":"c","tls_id":"` + tlsID + `","fingerprint":"` + fp.String() + `"}`
	if v, err := m.parse("ep/c/"+id, []byte(good)); err != nil || v.ep == nil || v.ep.TLSID != tlsID {
		t.Fatalf("good endpoint: %v %v", v, err)
	}
	if v, err := m.parse("revoked/c/"+id, []byte(good)); err != nil || !v.revoked {
		t.Fatalf("good revocation: %v %v", v, err)
	}
	if v, err := m.parse("conf/c", []byte(`{"conference":"c","allow_legacy":true}`)); err != nil || !v.conf.AllowLegacy {
		t.Fatalf("good conference: %v %v", v, err)
	}
	if _, err := m.parse("tlsid/ab", []byte("c/"+id)); err != nil {
		t.Fatalf("good claim: %v", err)
	}
	for _, tc := range []struct{ name, key, val string }{
		{"empty", "ep/c/" + id, ""},
		{"not json", "ep/c/" + id, "{"},
		{"huge", "ep/c/" + id, `{"conference":"` + strings.Repeat("c", maxStoreValue) + `"}`},
		{"unknown field", "ep/c/" + id, strings.TrimSuffix(good, "}") + `,"x":1}`},
		{"trailing", "ep/c/" + id, good + "{}"},
		{"other conference", "ep/d/" + id, good},
		{"moved entry", "ep/c/" + entryID(tlsID, Fingerprint{9}), good},
		{"bad tls-id", "ep/c/" + entryID("short", fp), `{"conference":"c","tls_id":"short","fingerprint":"` + fp.String() + `"}`},
		{"no fingerprint", "ep/c/" + entryID(tlsID, Fingerprint{}), `{"conference":"c","tls_id":"` + tlsID + `","fingerprint":"` + Fingerprint{}.String() + `"}`},
		{"bad fingerprint", "ep/c/" + id, `{"conference":"c","tls_id":"` + tlsID + `","fingerprint":"sha-256 zz"}`},
		{"bad kd tls-id", "ep/c/" + id, strings.TrimSuffix(good, "}") + `,"kd_tls_id":"x"}`},
		{"conference mismatch", "conf/c", `{"conference":"d"}`},
		{"conference type", "conf/c", `{"conference":"c","allow_legacy":"yes"}`},
		{"claim empty", "tlsid/ab", ""},
		{"claim bad", "tlsid/ab", "a/b"},
		{"claim no id", "tlsid/ab", "c"},
		{"claim bad conference", "tlsid/ab", "a b/" + id},
		{"claim bad id", "tlsid/ab", "c/" + strings.ToUpper(id)},
		{"unknown kind", "other/c", good},
		{"too deep", "ep/c/" + id + "/x", good},
		{"too shallow", "ep/c", good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := m.parse(tc.key, []byte(tc.val)); !errors.Is(err, ErrStoreValue) {
				t.Fatalf("got %v, want ErrStoreValue", err)
			}
		})
	}
}

// FuzzRegistryValue: no key or value panics; what parses is valid.
func FuzzRegistryValue(f *testing.F) {
	m := &regMirror{s: &Store{prefix: "/p/"}}
	fp := Fingerprint{1, 2, 3}
	tlsID := "abcdefghijklmnopqrstuvwxyz"
	f.Add("ep/c/"+entryID(tlsID, fp), []byte(`{"conference":"c","tls_id":"`+tlsID+`","fingerprint":"`+fp.String()+`"}`))
	f.Add("conf/c", []byte(`{"conference":"c","allow_legacy":true}`))
	f.Add("tlsid/x", []byte("c/"+entryID(tlsID, fp)))
	f.Fuzz(func(t *testing.T, key string, val []byte) {
		v, err := m.parse(key, val)
		if err != nil {
			if !errors.Is(err, ErrStoreValue) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if v.ep != nil {
			e := Endpoint{TLSID: v.ep.TLSID, Fingerprint: v.ep.Fingerprint, KDTLSID: v.ep.KDTLSID}
			if validateEndpoint(&e, true) != nil || entryID(e.TLSID, e.Fingerprint) != key[strings.LastIndexByte(key, '/')+1:] {
				t.Fatal("accepted an invalid endpoint")
			}
		}
	})
}

// TestStoredAssocBadInput: published associations are checked against
// their key and validated.
func TestStoredAssocBadInput(t *testing.T) {
	id := uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	fp := Fingerprint{1}.String()
	tlsID := NewTLSID()
	good := `{"md":"md1","id":"` + id.String() + `","conference":"c","tls_id":"` + tlsID + `","fingerprint":"` + fp + `","since":"2026-01-01T00:00:00Z"}`
	d := assocDigest("md1", id)
	if a, err := parseStoredAssoc(d, []byte(good)); err != nil || a.TLSID != tlsID {
		t.Fatalf("good: %v %v", a, err)
	}
	for _, tc := range []struct{ name, digest, val string }{
		{"empty", d, ""},
		{"not json", d, "["},
		{"other digest", assocDigest("md2", id), good},
		{"bad id", d, strings.Replace(good, id.String(), "nope", 1)},
		{"bad conference", d, strings.Replace(good, `"conference":"c"`, `"conference":"a/b"`, 1)},
		{"bad tls-id", d, strings.Replace(good, tlsID, "x", 1)},
		{"bad fingerprint", d, strings.Replace(good, fp, "sha-256 00", 1)},
		{"unknown field", d, strings.TrimSuffix(good, "}") + `,"key":"00"}`},
		{"huge", d, strings.Repeat(" ", maxStoreValue+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseStoredAssoc(tc.digest, []byte(tc.val)); !errors.Is(err, ErrStoreValue) {
				t.Fatalf("got %v, want ErrStoreValue", err)
			}
		})
	}
}

// FuzzStoredAssoc: no published association panics; what parses matches
// its key.
func FuzzStoredAssoc(f *testing.F) {
	id := uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	f.Add(assocDigest("md1", id), []byte(`{"md":"md1","id":"`+id.String()+`","conference":"c","fingerprint":"`+Fingerprint{1}.String()+`","since":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, digest string, val []byte) {
		a, err := parseStoredAssoc(digest, val)
		if err != nil {
			if !errors.Is(err, ErrStoreValue) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if assocDigest(a.MD, a.ID) != digest {
			t.Fatal("accepted a record under another key")
		}
	})
}
