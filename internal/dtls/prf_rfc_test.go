package dtls

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"testing"
)

// TLS 1.2 PRF vectors (P_SHA256 and P_SHA384, label "test label"), posted
// to the IETF TLS list (msg03416) and reproduced here with OpenSSL 3.0:
//
//	openssl kdf -keylen 100 -kdfopt digest:SHA256 -kdfopt hexsecret:... \
//	        -kdfopt hexseed:<hex("test label")><seed> TLS1-PRF
func TestPRFVectors(t *testing.T) {
	for _, v := range []struct {
		hash                 crypto.Hash
		secret, seed, output string
	}{{
		crypto.SHA256,
		"9bbe436ba940f017b17652849a71db35",
		"a0ba9f936cda311827a6f796ffd5198c",
		"e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66",
	}, {
		crypto.SHA384,
		"b80b733d6ceefcdc71566ea48e5567df",
		"cd665cf6a8447dd6ff8b27555edb7465",
		"7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cde9ca0faa60be9fe34f82b1233c9146a0e534cb400fed2700884f9dc236f80edd8bfa961144c9e8d792eca722a7b32fc3d416d473ebc2c5fd4abfdad05d9184259b5bf8cd4d90fa0d31e2dec479e4f1a26066f2eea9a69236a3e52655c9e9aee691c8f3a26854308d5eaa3be85e0990703d73e56f",
	}} {
		secret, _ := hex.DecodeString(v.secret)
		seed, _ := hex.DecodeString(v.seed)
		want, _ := hex.DecodeString(v.output)
		got := make([]byte, len(want))
		prf(v.hash, got, secret, "test label", seed)
		if !bytes.Equal(got, want) {
			t.Errorf("%v: PRF\n got %x\nwant %x", v.hash, got, want)
		}
		// Seeds given in pieces make the same output.
		got2 := make([]byte, len(want))
		prf(v.hash, got2, secret, "test label", seed[:5], seed[5:])
		if !bytes.Equal(got2, want) {
			t.Errorf("%v: PRF with a split seed differs", v.hash)
		}
	}
}

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	steps := []struct {
		seq  uint64
		want bool
	}{
		{5, true}, {5, false}, {4, true}, {4, false}, {100, true}, {37, true}, {36, false},
		{99, true}, {100, false}, {1000, true}, {936, false}, {937, true}, {937, false},
	}
	for i, s := range steps {
		ok := w.check(s.seq)
		if ok != s.want {
			t.Fatalf("step %d: check(%d) = %v, want %v", i, s.seq, ok, s.want)
		}
		if ok {
			w.mark(s.seq)
		}
	}
}

func TestRecordProtection(t *testing.T) {
	key, iv := bytes.Repeat([]byte{1}, 16), []byte{9, 8, 7, 6}
	w, _ := newGCMState(key, iv)
	r, _ := newGCMState(key, iv)
	rec := w.seal(nil, contentHandshake, 1, 42, []byte("finished"))
	if len(rec) != recordOverhead+len("finished") {
		t.Fatalf("record of %d octets", len(rec))
	}
	frag := rec[recordHeaderLen:]
	pt, err := r.open(contentHandshake, versionDTLS12, 1, 42, frag)
	if err != nil || string(pt) != "finished" {
		t.Fatalf("open: %q %v", pt, err)
	}
	// Type, sequence number and every octet are authenticated.
	if _, err := r.open(contentAlert, versionDTLS12, 1, 42, frag); err == nil {
		t.Fatal("type not authenticated")
	}
	if _, err := r.open(contentHandshake, versionDTLS12, 1, 43, frag); err == nil {
		t.Fatal("sequence number not authenticated")
	}
	for i := range frag {
		f := bytes.Clone(frag)
		f[i] ^= 1
		if _, err := r.open(contentHandshake, versionDTLS12, 1, 42, f); err == nil {
			t.Fatalf("octet %d not authenticated", i)
		}
	}
	if _, err := r.open(contentHandshake, versionDTLS12, 1, 42, frag[:gcmExplicitNonce+gcmTagLen-1]); err == nil {
		t.Fatal("short record opened")
	}
}
