package dtls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/big"
	"math/bits"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/cryptotest"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// Fuzz targets for every parser of outside bytes (messages.go), the
// handshake reassembler (fragment.go), the record replay window
// (record.go), a server and a client Conn fed arbitrary datagrams, and a
// full in-memory handshake with one datagram tampered with.
//
// The Conn targets are deterministic: certificates are derived from fixed
// seeds, the cookie jar has a fixed secret, and crypto/rand is reset to the
// same stream (testing/cryptotest) before every call into a fuzzed Conn. A
// transcript recorded under the same rule therefore replays to the end of
// the handshake (EKTKey and ACK included) in any process, and the fuzzer
// mutates from there.

// ---------------------------------------------------------------------
// Parsers of handshake message bodies.

// addTruncations adds b, a few of its prefixes and b with a trailing octet.
func addTruncations(f *testing.F, b []byte) {
	f.Add(b)
	for _, n := range []int{0, 1, 2, 3, len(b) / 2, len(b) - 1} {
		if n >= 0 && n < len(b) {
			f.Add(b[:n])
		}
	}
	f.Add(append(slices.Clone(b), 0))
}

// clobber overwrites the input of a parser after the parse, so that a
// result that aliases it shows up in the round trip.
func clobber(b []byte) {
	for i := range b {
		b[i] = 0xA5
	}
}

// checkParseFailure asserts that a parse failure is a local fatal alert
// among allowed, with a reason, and that decode_error wraps errDecode.
func checkParseFailure(t *testing.T, what string, aerr *AlertError, allowed ...uint8) {
	t.Helper()
	checkAlert(t, what, aerr, allowed...)
	if aerr.Description == AlertDecodeError && !errors.Is(aerr, errDecode) {
		t.Fatalf("%s: decode_error %v does not wrap errDecode", what, aerr)
	}
}

// checkAlert asserts that aerr is a local fatal alert among allowed, with a
// reason.
func checkAlert(t *testing.T, what string, aerr *AlertError, allowed ...uint8) {
	t.Helper()
	switch {
	case aerr == nil:
		t.Fatalf("%s: no result and no error", what)
	case aerr.Remote || aerr.Err == nil:
		t.Fatalf("%s: error %+v is not a local alert with a reason", what, aerr)
	case !slices.Contains(allowed, aerr.Description):
		t.Fatalf("%s: alert %s, want one of %v", what, alertName(aerr.Description), allowed)
	}
}

// mustBytes unwraps a builder's result; the builders here fail only on a
// vector too long, which no test input makes.
func mustBytes(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// splitExtensions cuts an extension list (type, uint16 length, data; no
// outer length) the way dtlsmsg does, as far as it is well formed. A
// repeated type is left out: dtlsmsg refuses a hello that repeats one.
func splitExtensions(b []byte) []dtlsmsg.Extension {
	var exts []dtlsmsg.Extension
	var seen [1 << 16 / 64]uint64
	for len(b) >= 4 {
		typ, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if n > len(b)-4 {
			break
		}
		data := b[4 : 4+n : 4+n]
		b = b[4+n:]
		if seen[typ/64]&(1<<(typ%64)) != 0 {
			continue
		}
		seen[typ/64] |= 1 << (typ % 64)
		exts = append(exts, dtlsmsg.Extension{Type: typ, Data: data})
	}
	return exts
}

func joinExtensions(exts []dtlsmsg.Extension) []byte {
	var b []byte
	for _, e := range exts {
		b, _ = dtlsmsg.AppendExtension(b, e.Type, e.Data)
	}
	return b
}

// encodeHelloExtension rebuilds the extension_data of an extension
// parseHelloExtensions interprets from what it made of it; ok is false for
// the types it only lists.
func encodeHelloExtension(he *helloExtensions, typ uint16, server bool) (data []byte, ok bool) {
	var b cryptobyte.Builder
	switch typ {
	case extSupportedGroups:
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, g := range he.groups {
				b.AddUint16(uint16(g))
			}
		})
	case extECPointFormats:
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(he.pointFormats) })
	case extSignatureAlgorithms:
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, s := range he.schemes {
				b.AddUint16(uint16(s))
			}
		})
	case extExtendedMaster:
	case extSupportedEKTCiphers:
		if server {
			for _, c := range he.ektCiphers {
				b.AddUint8(uint8(c))
			}
		} else {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, c := range he.ektCiphers {
					b.AddUint8(uint8(c))
				}
			})
		}
	case extRenegotiationInfo:
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(he.renegInfo) })
	default:
		return nil, false
	}
	out, err := b.Bytes()
	return out, err == nil
}

func FuzzParseHelloExtensions(f *testing.F) {
	ch := mustBytes(marshalClientHello(&clientHelloParams{
		suites: DefaultCipherSuites, groups: DefaultGroups, profiles: []uint16{SRTPAEADAES128GCM},
		mki: []byte{1, 2}, esid: testTLSID, ektCiphers: []EKTCipher{EKTCipherAESKW128, EKTCipherAESKW256},
	}))
	sh := mustBytes(marshalServerHello(&serverHelloParams{
		suite: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, profile: SRTPAEADAES128GCM,
		esid: testKDTLSID, ekt: EKTCipherAESKW128, pointFormats: true,
	}))
	pch, err := dtlsmsg.ParseClientHello(ch)
	if err != nil {
		f.Fatal(err)
	}
	psh, err := dtlsmsg.ParseServerHello(sh)
	if err != nil {
		f.Fatal(err)
	}
	addTruncations(f, joinExtensions(pch.Extensions))
	addTruncations(f, joinExtensions(psh.Extensions))
	for _, e := range []dtlsmsg.Extension{
		{Type: extSupportedGroups, Data: []byte{0, 3, 0, 23, 0}},
		{Type: extSupportedGroups, Data: []byte{0, 0}},
		{Type: extECPointFormats, Data: []byte{0}},
		{Type: extSignatureAlgorithms, Data: []byte{0, 2, 4}},
		{Type: extExtendedMaster, Data: []byte{0}},
		{Type: extSupportedEKTCiphers, Data: []byte{1}},
		{Type: extSupportedEKTCiphers, Data: []byte{2, 1, 2}},
		{Type: extRenegotiationInfo, Data: []byte{1, 0}},
		{Type: extRenegotiationInfo, Data: []byte{0, 0}},
	} {
		f.Add(joinExtensions([]dtlsmsg.Extension{e}))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		exts := splitExtensions(b)
		var forms [2]helloExtensions
		var errs [2]*AlertError
		for i, server := range []bool{false, true} {
			he, aerr := parseHelloExtensions(exts, server)
			forms[i], errs[i] = he, aerr
			if aerr != nil {
				checkParseFailure(t, "hello extensions", aerr, AlertDecodeError)
				continue
			}
			if len(he.types) != len(exts) {
				t.Fatalf("server %v: %d types listed for %d extensions", server, len(he.types), len(exts))
			}
			has := map[uint16]bool{}
			for j, e := range exts {
				if he.types[j] != e.Type {
					t.Fatalf("server %v: type %d listed as %d", server, e.Type, he.types[j])
				}
				has[e.Type] = true
				want, ok := encodeHelloExtension(&he, e.Type, server)
				if ok && !bytes.Equal(want, e.Data) {
					t.Fatalf("server %v: extension %d: data %x re-encodes as %x", server, e.Type, e.Data, want)
				}
			}
			if he.hasGroups != has[extSupportedGroups] || he.hasPointFmts != has[extECPointFormats] ||
				he.hasSchemes != has[extSignatureAlgorithms] || he.ems != has[extExtendedMaster] ||
				he.hasEKT != has[extSupportedEKTCiphers] || he.hasRenegInfo != has[extRenegotiationInfo] {
				t.Fatalf("server %v: presence flags %+v for types %v", server, he, he.types)
			}
			if he.hasGroups && len(he.groups) == 0 || he.hasSchemes && len(he.schemes) == 0 ||
				he.hasPointFmts && len(he.pointFormats) == 0 || he.hasEKT && len(he.ektCiphers) == 0 ||
				server && he.hasEKT && len(he.ektCiphers) != 1 {
				t.Fatalf("server %v: empty list accepted: %+v", server, he)
			}
		}
		// Only supported_ekt_ciphers differs between the two forms.
		if slices.ContainsFunc(exts, func(e dtlsmsg.Extension) bool { return e.Type == extSupportedEKTCiphers }) {
			return
		}
		if (errs[0] == nil) != (errs[1] == nil) || errs[0] == nil && !reflect.DeepEqual(forms[0], forms[1]) {
			t.Fatalf("client and server forms differ without supported_ekt_ciphers: %+v %v / %+v %v", forms[0], errs[0], forms[1], errs[1])
		}
	})
}

func FuzzParseHelloVerifyRequest(f *testing.F) {
	cookie := bytes.Repeat([]byte{0xC0}, cookieLen)
	addTruncations(f, marshalHelloVerifyRequest(cookie))
	f.Add(marshalHelloVerifyRequest(nil))
	f.Add(marshalHelloVerifyRequest(bytes.Repeat([]byte{1}, 255)))
	f.Add(append([]byte{0xFE, 0xFD, 1}, 7))
	f.Add(append([]byte{0xFE, 0xFC, 1}, 7))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := slices.Clone(b)
		got, aerr := parseHelloVerifyRequest(in)
		if aerr != nil {
			if got != nil {
				t.Fatal("cookie with an error")
			}
			checkParseFailure(t, "HelloVerifyRequest", aerr, AlertDecodeError, AlertProtocolVersion)
			return
		}
		clobber(in)
		v := binary.BigEndian.Uint16(b)
		if v != versionDTLS10 && v != versionDTLS12 {
			t.Fatalf("version %#04x accepted", v)
		}
		if re := marshalHelloVerifyRequest(got); !bytes.Equal(re[2:], b[2:]) {
			t.Fatalf("marshal(parse(%x)) = %x", b, re)
		}
	})
}

func FuzzParseCertificate(f *testing.F) {
	fx := fuzzFixtures(f)
	addTruncations(f, mustBytes(marshalCertificate(fx.serverCert.Certificate)))
	f.Add(mustBytes(marshalCertificate(nil)))
	f.Add(mustBytes(marshalCertificate([][]byte{{1}, {2, 3}, {4}})))
	f.Add(mustBytes(marshalCertificate(slices.Repeat([][]byte{{9}}, maxChain+1))))
	f.Add([]byte{0, 0, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := slices.Clone(b)
		chain, aerr := parseCertificate(in)
		if aerr != nil {
			if chain != nil {
				t.Fatal("chain with an error")
			}
			checkParseFailure(t, "Certificate", aerr, AlertDecodeError, AlertBadCertificate)
			return
		}
		clobber(in)
		if len(chain) > maxChain {
			t.Fatalf("%d certificates accepted", len(chain))
		}
		for _, c := range chain {
			if len(c) == 0 {
				t.Fatal("empty certificate accepted")
			}
		}
		if re := mustBytes(marshalCertificate(chain)); !bytes.Equal(re, b) {
			t.Fatalf("marshal(parse(%x)) = %x", b, re)
		}
	})
}

func FuzzParseServerKeyExchange(f *testing.F) {
	for _, m := range []*serverKeyExchange{
		{group: GroupX25519, public: bytes.Repeat([]byte{7}, 32), scheme: ECDSAWithP256AndSHA256, signature: bytes.Repeat([]byte{8}, 71)},
		{group: GroupP256, public: bytes.Repeat([]byte{4}, 65), scheme: PSSWithSHA256, signature: bytes.Repeat([]byte{9}, 256)},
		{group: GroupP384, public: []byte{1}, scheme: 0xFFFF},
	} {
		addTruncations(f, mustBytes(marshalServerKeyExchange(m)))
	}
	f.Add([]byte{2, 0, 23, 1, 4, 4, 3, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := slices.Clone(b)
		ske, aerr := parseServerKeyExchange(in)
		if aerr != nil {
			if ske != nil {
				t.Fatal("ServerKeyExchange with an error")
			}
			checkParseFailure(t, "ServerKeyExchange", aerr, AlertDecodeError, AlertIllegalParameter)
			return
		}
		if ske == nil {
			t.Fatal("no ServerKeyExchange and no error")
		}
		clobber(in)
		if len(ske.public) == 0 || len(ske.public) > 255 {
			t.Fatalf("public value of %d octets accepted", len(ske.public))
		}
		if re := mustBytes(marshalServerKeyExchange(ske)); !bytes.Equal(re, b) {
			t.Fatalf("marshal(parse(%x)) = %x", b, re)
		}
	})
}

// FuzzPeerLeafKey feeds peerLeafKey arbitrary leaf certificates. Whatever
// it accepts is a key of a kind and size the package allows, and wherever
// crypto/x509 parses the whole certificate, the key peerLeafKey finds is
// the one x509 finds.
func FuzzPeerLeafKey(f *testing.F) {
	for _, kind := range []string{"p256", "p384", "p521", "rsa", "rsa1024"} {
		der := testCert(f, kind).Certificate[0]
		f.Add(der)
		f.Add(der[:len(der)/3])
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		in := slices.Clone(der)
		pub, aerr := peerLeafKey([][]byte{in})
		cert, xerr := x509.ParseCertificate(der)
		if aerr != nil {
			if pub != nil {
				t.Fatal("key with an alert")
			}
			switch aerr.Description {
			case AlertBadCertificate:
				if xerr == nil {
					if _, perr := x509.ParsePKIXPublicKey(cert.RawSubjectPublicKeyInfo); perr == nil {
						t.Fatalf("x509 parses the certificate and its key, peerLeafKey does not: %v", aerr)
					}
				}
			case AlertUnsupportedCertificate, AlertInsufficientSecurity:
			default:
				t.Fatalf("unexpected alert %v", aerr)
			}
			return
		}
		switch k := pub.(type) {
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
				t.Fatalf("accepted a key on %s", k.Curve.Params().Name)
			}
		case *rsa.PublicKey:
			if b := k.N.BitLen(); b < minRSABits || b > maxRSABits || k.E != 65537 {
				t.Fatalf("accepted an RSA key of %d bits, exponent %d", b, k.E)
			}
		default:
			t.Fatalf("accepted a key of type %T", pub)
		}
		if xerr == nil {
			if eq, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
				t.Fatal("peerLeafKey and x509 disagree on the key")
			}
		}
	})
}

func FuzzParseCertificateRequest(f *testing.F) {
	canonical := mustBytes(marshalCertificateRequest())
	addTruncations(f, canonical)
	f.Add([]byte{1, 64, 0, 2, 4, 3, 0, 4, 0, 2, 0x30, 0})
	f.Add([]byte{0, 0, 2, 4, 3, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := slices.Clone(b)
		cr, aerr := parseCertificateRequest(in)
		if aerr != nil {
			if cr != nil {
				t.Fatal("CertificateRequest with an error")
			}
			checkParseFailure(t, "CertificateRequest", aerr, AlertDecodeError)
			return
		}
		if cr == nil {
			t.Fatal("no CertificateRequest and no error")
		}
		clobber(in)
		if len(cr.types) == 0 || len(cr.schemes) == 0 {
			t.Fatalf("empty list accepted: %+v", cr)
		}
		// certificate_authorities is checked and dropped: the rest is the
		// fields, then one uint16-prefixed vector.
		var re cryptobyte.Builder
		re.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(cr.types) })
		re.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, s := range cr.schemes {
				b.AddUint16(uint16(s))
			}
		})
		head := mustBytes(re.Bytes())
		rest := cryptobyte.String(b)
		var cas cryptobyte.String
		if !bytes.HasPrefix(b, head) || !rest.Skip(len(head)) || !rest.ReadUint16LengthPrefixed(&cas) || !rest.Empty() {
			t.Fatalf("parse(%x) = %+v does not account for the input", b, cr)
		}
		if bytes.Equal(b, canonical) && (!slices.Equal(cr.schemes, supportedSchemes) || !bytes.Equal(cr.types, []byte{certTypeECDSASign, certTypeRSASign})) {
			t.Fatalf("our own CertificateRequest parses as %+v", cr)
		}
	})
}

func FuzzParseClientKeyExchange(f *testing.F) {
	addTruncations(f, marshalClientKeyExchange(bytes.Repeat([]byte{3}, 32)))
	f.Add(marshalClientKeyExchange(bytes.Repeat([]byte{4}, 65)))
	f.Add(marshalClientKeyExchange(bytes.Repeat([]byte{5}, 255)))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := slices.Clone(b)
		pub, aerr := parseClientKeyExchange(in)
		if aerr != nil {
			if pub != nil {
				t.Fatal("public value with an error")
			}
			checkParseFailure(t, "ClientKeyExchange", aerr, AlertDecodeError)
			return
		}
		clobber(in)
		if len(pub) == 0 {
			t.Fatal("empty public value accepted")
		}
		if re := marshalClientKeyExchange(pub); !bytes.Equal(re, b) {
			t.Fatalf("marshal(parse(%x)) = %x", b, re)
		}
	})
}

func FuzzParseDigitallySigned(f *testing.F) {
	addTruncations(f, mustBytes(marshalDigitallySigned(ECDSAWithP256AndSHA256, bytes.Repeat([]byte{0x30}, 70))))
	f.Add(mustBytes(marshalDigitallySigned(PSSWithSHA384, bytes.Repeat([]byte{1}, 256))))
	f.Add(mustBytes(marshalDigitallySigned(0, nil)))
	f.Fuzz(func(t *testing.T, b []byte) {
		scheme, sig, aerr := parseDigitallySigned(b)
		if aerr != nil {
			if sig != nil || scheme != 0 {
				t.Fatal("signature with an error")
			}
			checkParseFailure(t, "CertificateVerify", aerr, AlertDecodeError)
			return
		}
		// The signature aliases the body (it is verified at once).
		if re := mustBytes(marshalDigitallySigned(scheme, sig)); !bytes.Equal(re, b) {
			t.Fatalf("marshal(parse(%x)) = %x", b, re)
		}
	})
}

func FuzzParseEKTKey(f *testing.F) {
	for _, k := range []EKTKey{
		{Key: bytes.Repeat([]byte{1}, 16), MasterSalt: bytes.Repeat([]byte{2}, 12), SPI: 7, TTL: 3600},
		{Key: bytes.Repeat([]byte{3}, 32), MasterSalt: bytes.Repeat([]byte{4}, 14), SPI: 0xFFFF, TTL: maxEKTTTL},
		{Key: bytes.Repeat([]byte{5}, 256), MasterSalt: bytes.Repeat([]byte{6}, 256)},
		{Key: []byte{9}, MasterSalt: []byte{8}},
	} {
		addTruncations(f, mustBytes(marshalEKTKey(&k)))
	}
	f.Add(mustBytes(marshalEKTKey(&EKTKey{Key: bytes.Repeat([]byte{5}, 257), MasterSalt: []byte{1}})))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := slices.Clone(b)
		k, aerr := parseEKTKey(in)
		if aerr != nil {
			if k != nil {
				t.Fatal("EKTKey with an error")
			}
			checkParseFailure(t, "EKTKey", aerr, AlertDecodeError)
			return
		}
		if k == nil {
			t.Fatal("no EKTKey and no error")
		}
		clobber(in)
		if len(k.Key) < 1 || len(k.Key) > 256 || len(k.MasterSalt) < 1 || len(k.MasterSalt) > 256 || k.TTL > maxEKTTTL {
			t.Fatalf("out of bounds: %v", k)
		}
		if re := mustBytes(marshalEKTKey(k)); !bytes.Equal(re, b) {
			t.Fatalf("marshal(parse(%x)) = %x", b, re)
		}
		s := k.String()
		for _, secret := range [][]byte{k.Key, k.MasterSalt} {
			if len(secret) >= 8 && strings.Contains(strings.ToLower(s), hex.EncodeToString(secret)) {
				t.Fatalf("String %q prints key material", s)
			}
		}
		k.Zero()
		if slices.ContainsFunc(append(slices.Clone(k.Key), k.MasterSalt...), func(c byte) bool { return c != 0 }) {
			t.Fatal("Zero left key material")
		}
	})
}

func FuzzParseACK(f *testing.F) {
	addTruncations(f, marshalACK([]recordNumber{{1, 0}, {1, 7}}))
	f.Add(marshalACK(nil))
	f.Add(marshalACK(slices.Repeat([]recordNumber{{1, 1}}, maxACKRecords)))
	f.Add(marshalACK(slices.Repeat([]recordNumber{{1, 1}}, maxACKRecords+1)))
	f.Add(marshalACK([]recordNumber{{^uint64(0), ^uint64(0)}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, aerr := parseACK(b)
		if aerr != nil {
			if recs != nil {
				t.Fatal("records with an error")
			}
			checkParseFailure(t, "ACK", aerr, AlertDecodeError)
			return
		}
		if recs == nil || len(recs) > maxACKRecords {
			t.Fatalf("%d records (nil %v) accepted", len(recs), recs == nil)
		}
		if re := marshalACK(recs); !bytes.Equal(re, b) {
			t.Fatalf("marshal(parse(%x)) = %x", b, re)
		}
	})
}

// ---------------------------------------------------------------------
// Handshake reassembly.

// reasmOp builds reassembler fuzz input: one add of a fragment.
func reasmOp(pattern bool, epoch uint16, typ uint8, length int, seqDelta int8, off int, frag []byte) []byte {
	op := byte(0)
	if epoch == 1 {
		op |= 4
	}
	if pattern {
		op |= 16
	}
	b := []byte{op, typ, byte(length >> 8), byte(length), byte(seqDelta), byte(off >> 8), byte(off), byte(len(frag))}
	if !pattern {
		b = append(b, frag...)
	}
	return b
}

// patternOctet is the octet at offset j of message seq in a "pattern"
// fragment: fragments made this way never contradict each other.
func patternOctet(seq uint16, j int) byte { return byte(j*7) ^ byte(seq) }

type storedFrag struct {
	typ   uint8
	epoch uint16
	off   int
	data  []byte
}

// FuzzReassembler feeds a reassembler arbitrary fragments and checks its
// accounting and what it hands on. Input: a sequence of operations, each an
// octet op then its arguments:
//
//	op%4 == 0, 1  add: typ, length (uint16; shifted 8 left if op&8),
//	              message_seq - next (int8), fragment_offset (uint16),
//	              fragment_length (uint8), then the fragment octets unless
//	              op&16 (a non-contradicting pattern); epoch = op>>2&1
//	op%4 == 2     pop until nothing is complete
//	op%4 == 3     pop once, or (op&4) reset to next + int8(next octet)
func FuzzReassembler(f *testing.F) {
	msg := make([]byte, 40)
	for i := range msg {
		msg[i] = patternOctet(0, i)
	}
	var whole, parts, two []byte
	whole = append(reasmOp(false, 0, 1, 40, 0, 0, msg), 2)
	parts = append(parts, reasmOp(true, 0, 1, 40, 0, 30, make([]byte, 10))...)
	parts = append(parts, reasmOp(true, 0, 1, 40, 0, 0, make([]byte, 20))...)
	parts = append(parts, reasmOp(true, 0, 1, 40, 0, 15, make([]byte, 20))...)
	parts = append(parts, 2)
	two = append(two, reasmOp(true, 0, 11, 200, 1, 0, make([]byte, 200))...)
	two = append(two, reasmOp(true, 0, 2, 90, 0, 0, make([]byte, 90))...)
	two = append(two, reasmOp(true, 1, 20, 12, 2, 0, make([]byte, 12))...)
	two = append(two, reasmOp(true, 0, 2, 300, 7, 0, make([]byte, 3))...)
	two = append(two, 2, 7, 0xFE, 3)
	f.Add(whole)
	f.Add(parts)
	f.Add(two)
	f.Add(append(reasmOp(false, 0, 1, 4, 0, 0, []byte{1, 2}), reasmOp(false, 0, 1, 4, 0, 1, []byte{3, 4})...))
	f.Add(append(reasmOp(false, 0, 1, 4, 0, 0, []byte{1, 2}), reasmOp(false, 0, 3, 4, 0, 2, []byte{3, 4})...))
	f.Add(reasmOp(false, 0, 1, 0xFFFF, 0, 0, nil))
	f.Add(reasmOp(false, 0, 1, 4, -1, 0, nil))
	f.Add(reasmOp(false, 0, 1, 4, handshakeWindow, 0, nil))

	const maxMsg = 256
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := reassembler{maxMsg: maxMsg, maxTotal: 2 * maxMsg}
		model := map[uint16][]storedFrag{} // what each message's stored fragments said
		lastPopped, popped := uint16(0), false
		check := func(step int) {
			t.Helper()
			sum := 0
			for i, m := range r.slots {
				if m == nil {
					continue
				}
				if m.seq != r.next+uint16(i) || len(m.body) > r.maxMsg || len(m.have) != (len(m.body)+7)/8 {
					t.Fatalf("op %d: slot %d holds seq %d, %d octets, %d bitmap octets (next %d)", step, i, m.seq, len(m.body), len(m.have), r.next)
				}
				n := 0
				for j, h := range m.have {
					if j == len(m.have)-1 && len(m.body)%8 != 0 && h>>(len(m.body)%8) != 0 {
						t.Fatalf("op %d: seq %d: bits past the body", step, m.seq)
					}
					n += bits.OnesCount8(h)
				}
				if n != m.got || m.got > len(m.body) {
					t.Fatalf("op %d: seq %d: got %d, bitmap says %d", step, m.seq, m.got, n)
				}
				sum += len(m.body) + len(m.have)
			}
			if sum != r.buffered || r.buffered > r.maxTotal {
				t.Fatalf("op %d: buffered %d, slots hold %d, limit %d", step, r.buffered, sum, r.maxTotal)
			}
		}
		pop := func(step int) bool {
			t.Helper()
			next := r.next
			m := r.pop()
			if m == nil {
				if r.next != next {
					t.Fatalf("op %d: nothing popped but next moved", step)
				}
				return false
			}
			if !m.complete() || m.seq != next || r.next != next+1 || m.have != nil {
				t.Fatalf("op %d: popped seq %d (complete %v) with next %d -> %d", step, m.seq, m.complete(), next, r.next)
			}
			if popped && m.seq != lastPopped+1 {
				t.Fatalf("op %d: popped seq %d after %d", step, m.seq, lastPopped)
			}
			lastPopped, popped = m.seq, true
			for _, fr := range model[m.seq] {
				if fr.typ != m.typ || fr.epoch != m.epoch || !bytes.Equal(m.body[fr.off:fr.off+len(fr.data)], fr.data) {
					t.Fatalf("op %d: seq %d popped with octets no fragment said", step, m.seq)
				}
			}
			delete(model, m.seq)
			check(step)
			return true
		}
		for step := 0; len(ops) > 0; step++ {
			op := ops[0]
			ops = ops[1:]
			switch op % 4 {
			case 0, 1:
				if len(ops) < 7 {
					return
				}
				a := ops[:7]
				ops = ops[7:]
				epoch := uint16(op>>2) & 1
				length := int(binary.BigEndian.Uint16(a[1:]))
				if op&8 != 0 {
					length <<= 8
				}
				seq := r.next + uint16(int8(a[3]))
				off := int(binary.BigEndian.Uint16(a[4:]))
				frag := make([]byte, a[6])
				if op&16 != 0 {
					for i := range frag {
						frag[i] = patternOctet(seq, off+i)
					}
				} else {
					frag = frag[:copy(frag, ops)]
					ops = ops[len(frag):]
				}
				raw := appendHandshakeHeader(nil, a[0], length, seq, off, len(frag))
				h, part, _, err := dtlsmsg.NextHandshake(append(raw, frag...))
				if err != nil {
					continue // the Conn never hands such a fragment on
				}
				d := h.MessageSeq - r.next
				out, aerr := r.add(epoch, h, part)
				switch {
				case d >= 0x8000 && (out != fragOld || aerr != nil),
					d < 0x8000 && d >= handshakeWindow && (out != fragBeyond || aerr != nil):
					t.Fatalf("op %d: seq %d with next %d: outcome %d, %v", step, h.MessageSeq, r.next, out, aerr)
				case d < handshakeWindow && int(h.Length) > maxMsg && aerr == nil:
					t.Fatalf("op %d: message of %d octets above the limit accepted", step, h.Length)
				case aerr != nil:
					checkAlert(t, "fragment", aerr, AlertDecodeError, AlertIllegalParameter)
				case out == fragStored:
					model[h.MessageSeq] = append(model[h.MessageSeq], storedFrag{h.Type, epoch, int(h.FragmentOffset), slices.Clone(part)})
				}
				check(step)
			case 2:
				for pop(step) {
				}
			case 3:
				if op&4 == 0 {
					pop(step)
					continue
				}
				if len(ops) == 0 {
					return
				}
				r.reset(r.next + uint16(int8(ops[0])))
				ops = ops[1:]
				clear(model)
				popped = false
				check(step)
			}
		}
	})
}

// ---------------------------------------------------------------------
// Record replay window.

// FuzzReplayWindow compares replayWindow with a model: every sequence
// number accepted and marked is remembered; a number is acceptable if it
// was never marked and is above the highest marked, or less than 64 below
// it. Input: pairs (op, v); op%4 picks the sequence number relative to the
// highest marked one (+v, -v, +v<<16, start^v<<k); op&4 means the record
// failed authentication (checked, not marked).
func FuzzReplayWindow(f *testing.F) {
	f.Add(uint64(0), []byte{0, 0, 0, 1, 0, 2, 1, 1, 1, 2, 0, 63, 1, 63, 1, 64})
	f.Add(uint64(1<<48-1), []byte{0, 0, 1, 1, 1, 64, 0, 200, 1, 200})
	f.Add(uint64(5), []byte{2, 1, 1, 1, 3, 1, 4, 0, 0, 0})
	f.Fuzz(func(t *testing.T, start uint64, ops []byte) {
		var w replayWindow
		seen := map[uint64]bool{}
		marked, hi := false, start
		for i := 0; i+1 < len(ops); i += 2 {
			op, v := ops[i], uint64(ops[i+1])
			var seq uint64
			switch op % 4 {
			case 0:
				seq = hi + v
			case 1:
				seq = hi - v
			case 2:
				seq = hi + v<<16
			case 3:
				seq = start ^ v<<(op>>3&63)
			}
			want := !seen[seq] && (!marked || seq > hi || hi-seq < replayWindowSize)
			if got := w.check(seq); got != want {
				t.Fatalf("op %d: check(%d) = %v, want %v (highest %d, seen %v)", i/2, seq, got, want, hi, seen[seq])
			}
			if want && op&4 == 0 {
				w.mark(seq)
				seen[seq] = true
				if !marked || seq > hi {
					hi = seq
				}
				marked = true
			}
			if marked && (w.highest != hi || !w.seen) {
				t.Fatalf("op %d: window highest %d, model %d", i/2, w.highest, hi)
			}
		}
	})
}

// ---------------------------------------------------------------------
// Conn fixtures: deterministic certificates, cookie jar and configs.

// fuzzBinding is the server's transport binding, as link uses it.
var fuzzBinding = []byte("203.0.113.7:5004")

type fuzzFixture struct {
	serverCert, clientCert tls.Certificate
	jar                    *CookieJar
	// server[i]: i&1 DisableHelloVerify, i&2 HoldFinalFlight; server[2]
	// also trusts a relay's cookies (RelayVerifiesCookies, as the KD does
	// behind an mdfast MD).
	server [4]*Config
	client *Config
	ekt    EKTKey

	recOnce [2]sync.Once
	rec     [2]fuzzTranscript
	recErr  [2]error
}

var (
	fuzzFixOnce sync.Once
	fuzzFix     *fuzzFixture
	fuzzFixErr  error
)

// deterministicCert makes a P-256 certificate whose key and DER depend
// only on name: the key is a fixed scalar and the certificate is signed by
// an Ed25519 key (deterministic signatures); nothing checks that
// signature, the peers pin the leaf.
func deterministicCert(name string) (tls.Certificate, error) {
	scalar := sha256.Sum256([]byte("mdfast dtls fuzz key " + name))
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar[:])
	if err != nil {
		return tls.Certificate{}, err
	}
	seed := sha256.Sum256([]byte("mdfast dtls fuzz issuer " + name))
	issuer := ed25519.NewKeyFromSeed(seed[:])
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    fuzzBase.Add(-time.Hour),
		NotAfter:     fuzzBase.Add(100 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), issuer)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// fuzzBase is the clock every fuzzed Conn starts at (link's too).
var fuzzBase = time.Unix(1_700_000_000, 0)

func fuzzFixtures(tb testing.TB) *fuzzFixture {
	tb.Helper()
	fuzzFixOnce.Do(func() {
		fx := &fuzzFixture{}
		if fx.serverCert, fuzzFixErr = deterministicCert("server"); fuzzFixErr != nil {
			return
		}
		if fx.clientCert, fuzzFixErr = deterministicCert("client"); fuzzFixErr != nil {
			return
		}
		// A fixed secret that never rotates: a recorded cookie stays valid
		// in every process.
		fx.jar = &CookieJar{rotate: 200 * 365 * 24 * time.Hour, since: fuzzBase}
		copy(fx.jar.cur[:], "mdfast dtls fuzz cookie secret 1")
		copy(fx.jar.prev[:], "mdfast dtls fuzz cookie secret 0")
		for i := range fx.server {
			cfg := &Config{
				Certificate:          fx.serverCert,
				VerifyPeer:           pinned(fx.clientCert),
				SRTPProfiles:         []uint16{SRTPAEADAES128GCM, SRTPAEADAES256GCM, SRTPDoubleAES128GCM, SRTPDoubleAES256GCM},
				ExternalSessionID:    testKDTLSID,
				EKTCiphers:           []EKTCipher{EKTCipherAESKW128, EKTCipherAESKW256},
				Cookies:              fx.jar,
				DisableHelloVerify:   i&1 != 0,
				HoldFinalFlight:      i&2 != 0,
				RelayVerifiesCookies: i == 2,
				MTU:                  MinMTU, // flights 4 and 5 are fragmented
			}
			if fx.server[i], fuzzFixErr = cfg.Settle(true); fuzzFixErr != nil {
				return
			}
		}
		ccfg := &Config{
			Certificate:       fx.clientCert,
			VerifyPeer:        pinned(fx.serverCert),
			SRTPProfiles:      []uint16{SRTPAEADAES128GCM, SRTPAEADAES256GCM},
			ExternalSessionID: testTLSID,
			EKTCiphers:        []EKTCipher{EKTCipherAESKW128},
			MTU:               MinMTU,
		}
		if fx.client, fuzzFixErr = ccfg.Settle(false); fuzzFixErr != nil {
			return
		}
		fx.ekt = EKTKey{Key: bytes.Repeat([]byte{0x4B}, 16), MasterSalt: bytes.Repeat([]byte{0x53}, 12), SPI: 0x1234, TTL: 86400}
		fuzzFix = fx
	})
	if fuzzFixErr != nil {
		tb.Fatalf("fuzz fixtures: %v", fuzzFixErr)
	}
	return fuzzFix
}

// ---------------------------------------------------------------------
// Driving a fuzzed Conn and checking it after every call.

// fuzzConn is the owner of one Conn under test: it makes every call (each
// from the same crypto/rand stream), checks the Conn's invariants after
// it, and, on a server, sends one EKTKey as soon as the handshake is done
// (what the Key Distributor does).
type fuzzConn struct {
	t      *testing.T
	fx     *fuzzFixture
	c      *Conn
	now    time.Time
	hold   bool
	err    error // what the Conn ended with (nil while open)
	closed bool  // closed by Close
	ektOut bool  // the automatic EKTKey was sent
	sent   [][]byte
	events []Event
}

func newFuzzConn(t *testing.T, fx *fuzzFixture, server bool, cfgIndex int) *fuzzConn {
	d := &fuzzConn{t: t, fx: fx, now: fuzzBase}
	var err error
	if server {
		d.hold = cfgIndex&2 != 0
		d.c, err = NewServer(fx.server[cfgIndex], fuzzBinding)
	} else {
		d.c, err = NewClient(fx.client)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// maxOutPerCall bounds what one call may make the Conn send: no more than
// a flight, whatever came in.
const maxOutPerCall = 8 // × MTU

// do makes one call into the Conn; fn returns what the call returned (for
// calls that return the Conn's error) and timer says it was HandleTimeout.
func (d *fuzzConn) do(what string, timer bool, fn func() error) {
	t, c := d.t, d.c
	t.Helper()
	cryptotest.SetGlobalRandom(t, 1)
	wasClosed, wasEstablished := c.state == stateClosed, c.state == stateEstablished
	err := fn()

	out := c.Datagrams()
	total := 0
	for _, b := range out {
		total += len(b)
		if len(b) > c.cfg.MTU {
			t.Fatalf("%s: datagram of %d octets above the MTU %d", what, len(b), c.cfg.MTU)
		}
	}
	if total > maxOutPerCall*c.cfg.MTU {
		t.Fatalf("%s: %d octets in %d datagrams sent for one call (limit %d)", what, total, len(out), maxOutPerCall*c.cfg.MTU)
	}
	if wasClosed && len(out) > 0 {
		t.Fatalf("%s: a closed Conn sent %d datagrams", what, len(out))
	}
	d.sent = append(d.sent, out...)

	evs := c.Events()
	if wasClosed && len(evs) > 0 {
		t.Fatalf("%s: a closed Conn reported %v", what, evs)
	}
	for _, ev := range evs {
		switch ev.Kind {
		case EventClosed:
			if ev.Err == nil || ev.Err != c.err || d.closed {
				t.Fatalf("%s: EventClosed with %v (Conn error %v, closed by Close %v)", what, ev.Err, c.err, d.closed)
			}
		case EventHandshakeComplete:
			if hasEvent(d.events, EventHandshakeComplete) {
				t.Fatalf("%s: handshake completed twice", what)
			}
		case EventKeysReady:
			if !c.server || !d.hold || hasEvent(d.events, EventKeysReady) {
				t.Fatalf("%s: unexpected EventKeysReady", what)
			}
		case EventEKTKey:
			if c.server || ev.EKTKey == nil || ev.EKTKey.check(c.ekt) != nil {
				t.Fatalf("%s: EventEKTKey %v (cipher %v)", what, ev.EKTKey, c.ekt)
			}
		case EventEKTKeyAcked:
			if !c.server {
				t.Fatalf("%s: client reported an EKTKey ACK", what)
			}
		default:
			t.Fatalf("%s: event %v", what, ev.Kind)
		}
		d.events = append(d.events, ev)
	}

	// The error says whether the Conn has ended, and stays what it was.
	closed := c.state == stateClosed
	switch {
	case (err != nil) != closed:
		t.Fatalf("%s: returned %v with the Conn closed %v", what, err, closed)
	case err != nil && err != c.Err():
		t.Fatalf("%s: returned %v, Err says %v", what, err, c.Err())
	case d.err != nil && err != d.err:
		t.Fatalf("%s: the Conn ended with %v and now returns %v", what, d.err, err)
	case closed && !wasClosed && !d.closed && !hasEvent(evs, EventClosed):
		t.Fatalf("%s: the Conn ended (%v) without EventClosed", what, err)
	}
	d.err = err
	if closed {
		if c.master != nil || c.hs != nil || c.readCipher != nil || c.writeCipher != nil || len(c.flight) > 0 ||
			len(c.early) > 0 || c.reasm.buffered != 0 || len(c.ektQueue) > 0 || !c.deadline.IsZero() {
			t.Fatalf("%s: the closed Conn keeps state or secrets", what)
		}
		return
	}
	if wasEstablished && c.state != stateEstablished {
		t.Fatalf("%s: an established Conn went back to state %d", what, c.state)
	}

	// Memory stays bounded whatever came in.
	sum := 0
	for _, m := range c.reasm.slots {
		if m != nil {
			sum += len(m.body) + len(m.have)
		}
	}
	switch {
	case c.reasm.buffered != sum || c.reasm.buffered > c.reasm.maxTotal:
		t.Fatalf("%s: reassembly holds %d octets, accounts %d, limit %d", what, sum, c.reasm.buffered, c.reasm.maxTotal)
	case len(c.early) > maxEarlyRecords || c.earlyBytes > maxEarlyBytes:
		t.Fatalf("%s: %d early records of %d octets", what, len(c.early), c.earlyBytes)
	case len(c.ektQueue) > maxEKTQueue || len(c.ackPending) != 0:
		t.Fatalf("%s: %d EKTKeys queued, %d ACKs pending after the call", what, len(c.ektQueue), len(c.ackPending))
	case timer && !c.deadline.IsZero() && !c.deadline.After(d.now):
		t.Fatalf("%s: deadline %v not after now %v", what, c.deadline, d.now)
	case hasEvent(d.events, EventHandshakeComplete) != (c.state == stateEstablished):
		t.Fatalf("%s: state %d, handshake complete reported %v", what, c.state, hasEvent(d.events, EventHandshakeComplete))
	}
	if c.state == stateEstablished || c.state == stateHeld {
		if _, err := c.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 56); err != nil {
			t.Fatalf("%s: export in state %d: %v", what, c.state, err)
		}
	}

	if c.server && c.state == stateEstablished && c.ekt != 0 && !d.ektOut {
		d.ektOut = true
		d.owner(0)
	}
}

// deliver hands one datagram to the Conn.
func (d *fuzzConn) deliver(b []byte) {
	d.do("HandleDatagram", false, func() error { return d.c.HandleDatagram(d.now, b) })
}

// tick advances the clock by dt (to the deadline if dt < 0) and runs the
// timer.
func (d *fuzzConn) tick(dt time.Duration) {
	if dt < 0 {
		if dl := d.c.Deadline(); dl.After(d.now) {
			d.now = dl
		}
	} else {
		d.now = d.now.Add(dt)
	}
	d.do("HandleTimeout", true, func() error { return d.c.HandleTimeout(d.now) })
}

// owner does what the owner of the Conn may do besides feeding it: a held
// server releases its final flight, an established one sends an EKTKey.
func (d *fuzzConn) owner(spi uint8) {
	c := d.c
	switch {
	case !c.server:
	case c.state == stateHeld:
		d.do("ReleaseFinalFlight", false, func() error {
			if err := c.ReleaseFinalFlight(d.now); err != c.Err() {
				d.t.Fatalf("ReleaseFinalFlight: %v with Conn error %v", err, c.Err())
			}
			return c.Err()
		})
	case c.state == stateEstablished && c.ekt != 0:
		k := d.fx.ekt
		k.SPI += uint16(spi)
		k.Key = slices.Repeat([]byte{spi}, c.ekt.KeyLen())
		d.do("SendEKTKey", false, func() error {
			if err := c.SendEKTKey(d.now, k); err != nil && err != c.Err() {
				d.t.Fatalf("SendEKTKey: %v", err)
			}
			return c.Err()
		})
	}
}

func (d *fuzzConn) close() {
	d.closed = d.closed || d.c.state != stateClosed
	d.do("Close", false, func() error { d.c.Close(d.now); return d.c.Err() })
}

// Script entries for FuzzServerConn and FuzzClientConn: a two-octet
// big-endian header h, then for a datagram its octets.
const (
	scriptRecorded = 0xF0 // 0xF0nn: datagram nn of the recorded transcript (nothing past its end)
	scriptTick     = 0xF1 // 0xF1nn: the clock advances (nn+1)×20 ms, then HandleTimeout
	scriptDeadline = 0xF2 // 0xF2nn: the clock advances to Deadline, then HandleTimeout
	scriptOwner    = 0xF3 // 0xF3nn: owner action (see fuzzConn.owner), SPI offset nn
	scriptClose    = 0xF4 // 0xF4nn: Close
	// Below 0xF000, h is the length of a datagram (cut short at the end of
	// the script); other headers are ignored.
	scriptMaxDatagram = 0xF000
)

// scriptOf joins datagrams into a script.
func scriptOf(dgs ...[]byte) []byte {
	var b []byte
	for _, d := range dgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(d)))
		b = append(b, d...)
	}
	return b
}

func scriptCmd(cmd, arg byte) []byte { return []byte{cmd, arg} }

// recordedScript replays the first n datagrams of the recorded transcript,
// with after appended behind each.
func recordedScript(n int, after ...byte) []byte {
	var b []byte
	for i := range n {
		b = append(b, scriptCmd(scriptRecorded, byte(i))...)
		b = append(b, after...)
	}
	return b
}

// run plays a script against d; rec is the recorded transcript for 0xF0.
func (d *fuzzConn) run(script []byte, rec [][]byte) {
	for len(script) >= 2 {
		h := binary.BigEndian.Uint16(script)
		script = script[2:]
		if h < scriptMaxDatagram {
			n := min(int(h), len(script))
			d.deliver(script[:n:n])
			script = script[n:]
			continue
		}
		arg := byte(h)
		switch h >> 8 {
		case scriptRecorded:
			if int(arg) < len(rec) {
				d.deliver(slices.Clone(rec[arg]))
			}
		case scriptTick:
			d.tick(time.Duration(int(arg)+1) * 20 * time.Millisecond)
		case scriptDeadline:
			d.tick(-1)
		case scriptOwner:
			d.owner(arg)
		case scriptClose:
			d.close()
		}
	}
	// Whatever happened, an ended Conn stays ended.
	if d.c.state == stateClosed {
		d.deliver(append(appendRecordHeader(nil, contentAlert, versionDTLS12, 0, 99, 2), alertLevelFatal, AlertDecodeError))
		d.now = d.now.Add(time.Hour)
		d.do("HandleTimeout", true, func() error { return d.c.HandleTimeout(d.now) })
	}
}

// fuzzTranscript is what each side of a handshake sent.
type fuzzTranscript struct {
	toServer, toClient [][]byte
}

// recordTranscript runs a client and a server (cfgIndex) to the end of the
// handshake and the first EKTKey's ACK, both driven by fuzzConn: with
// crypto/rand reset before every call, a Conn of either side fed the
// other's datagrams in the same order makes the same ones again.
func recordTranscript(t *testing.T, fx *fuzzFixture, cfgIndex int) fuzzTranscript {
	c, s := newFuzzConn(t, fx, false, 0), newFuzzConn(t, fx, true, cfgIndex)
	c.do("Start", false, func() error { return c.c.Start(c.now) })
	var tr fuzzTranscript
	for round := 0; round < 50 && len(c.sent)+len(s.sent) > 0; round++ {
		toS, toC := c.sent, s.sent
		c.sent, s.sent = nil, nil
		for _, b := range toS {
			tr.toServer = append(tr.toServer, b)
			s.deliver(slices.Clone(b))
		}
		for _, b := range toC {
			tr.toClient = append(tr.toClient, b)
			c.deliver(slices.Clone(b))
		}
	}
	if !hasEvent(c.events, EventEKTKey) || !hasEvent(s.events, EventEKTKeyAcked) {
		t.Fatalf("recording: client events %v (%v), server events %v (%v)", c.events, c.err, s.events, s.err)
	}
	return tr
}

// recorded returns the deterministic transcript with a server of
// cfgIndex&1, made once per process.
func (fx *fuzzFixture) recorded(t *testing.T, cfgIndex int) fuzzTranscript {
	i := cfgIndex & 1
	fx.recOnce[i].Do(func() {
		// A failure here must not leave a half transcript for later inputs.
		fx.recErr[i] = errors.New("recording failed")
		fx.rec[i] = recordTranscript(t, fx, i)
		fx.recErr[i] = nil
	})
	if fx.recErr[i] != nil {
		t.Fatal(fx.recErr[i])
	}
	return fx.rec[i]
}

// linkTranscript runs a real handshake (and one EKTKey) through link,
// with the process's own randomness, and returns what each side sent.
func linkTranscript(tb testing.TB, fx *fuzzFixture, cfgIndex int) fuzzTranscript {
	var tr fuzzTranscript
	l := newLink(tb, fx.client, fx.server[cfgIndex])
	l.filter = func(fromClient bool, d []byte) [][]byte {
		if fromClient {
			tr.toServer = append(tr.toServer, slices.Clone(d))
		} else {
			tr.toClient = append(tr.toClient, slices.Clone(d))
		}
		return [][]byte{d}
	}
	l.start()
	if err := l.s.SendEKTKey(l.now, fx.ekt); err != nil {
		tb.Fatalf("link transcript: %v (client %v, server %v)", err, l.cev, l.sev)
	}
	l.run()
	if !hasEvent(l.cev, EventEKTKey) || !hasEvent(l.sev, EventEKTKeyAcked) {
		tb.Fatalf("link transcript: client %v, server %v", l.cev, l.sev)
	}
	return tr
}

// plainRecord wraps handshake message body as one epoch-0 record with an
// unfragmented handshake header.
func plainRecord(typ uint8, msgSeq uint16, recSeq uint64, body []byte) []byte {
	pt := transcriptBytes(nil, typ, msgSeq, body)
	return append(appendRecordHeader(nil, contentHandshake, versionDTLS12, 0, recSeq, len(pt)), pt...)
}

// fragmentRecords cuts one handshake message into records of at most n
// octets of body each.
func fragmentRecords(typ uint8, msgSeq uint16, recSeq uint64, body []byte, n int) [][]byte {
	var out [][]byte
	for off := 0; off == 0 || off < len(body); off += n {
		m := min(n, len(body)-off)
		pt := appendHandshakeHeader(nil, typ, len(body), msgSeq, off, m)
		pt = append(pt, body[off:off+m]...)
		out = append(out, append(appendRecordHeader(nil, contentHandshake, versionDTLS12, 0, recSeq, len(pt)), pt...))
		recSeq++
	}
	return out
}

// FuzzServerConn feeds a server Conn a script (see scriptRecorded) of
// datagrams, timer runs and owner actions. mode&1 turns the cookie
// exchange off, mode&2 holds the final flight.
func FuzzServerConn(f *testing.F) {
	fx := fuzzFixtures(f)
	for mode := range uint8(4) {
		// Replays of the deterministic transcript: to the EKTKey's ACK.
		f.Add(mode, recordedScript(16, scriptCmd(scriptOwner, 0)...))
		f.Add(mode, recordedScript(16, scriptCmd(scriptDeadline, 0)...))
	}
	for mode := range uint8(2) {
		// A real client's datagrams, recorded with another server random:
		// they fail at the CertificateVerify.
		tr := linkTranscript(f, fx, int(mode))
		f.Add(mode, scriptOf(tr.toServer...))
		f.Add(mode, append(scriptOf(tr.toServer[:2]...), scriptCmd(scriptDeadline, 0)...))
	}
	// Hand-made ClientHellos.
	hello := func(mut func(*clientHelloParams)) []byte {
		p := clientHelloParams{suites: DefaultCipherSuites, groups: DefaultGroups,
			profiles: []uint16{SRTPAEADAES128GCM}, esid: testTLSID, ektCiphers: []EKTCipher{EKTCipherAESKW128}}
		if mut != nil {
			mut(&p)
		}
		return mustBytes(marshalClientHello(&p))
	}
	ch := hello(nil)
	f.Add(uint8(1), scriptOf(plainRecord(typeClientHello, 0, 0, ch)))
	f.Add(uint8(0), scriptOf(plainRecord(typeClientHello, 0, 0, ch), plainRecord(typeClientHello, 1, 1, hello(func(p *clientHelloParams) {
		p.cookie = bytes.Repeat([]byte{1}, cookieLen)
	}))))
	f.Add(uint8(1), scriptOf(fragmentRecords(typeClientHello, 0, 0, ch, 40)...))
	f.Add(uint8(1), scriptOf(bytes.Join(fragmentRecords(typeClientHello, 0, 0, ch, 60), nil)))
	f.Add(uint8(0), scriptOf(append(plainRecord(typeClientHello, 0, 0, ch), plainRecord(typeClientHello, 0, 1, ch)...)))
	for _, mut := range []func(*clientHelloParams){
		func(p *clientHelloParams) { p.profiles = []uint16{0x0005} },
		func(p *clientHelloParams) { p.groups = []Group{30} },
		func(p *clientHelloParams) { p.suites = []uint16{0xC009} },
		func(p *clientHelloParams) { p.mki = []byte{1, 2, 3} },
		func(p *clientHelloParams) { p.esid = nil; p.ektCiphers = nil },
	} {
		f.Add(uint8(1), scriptOf(plainRecord(typeClientHello, 0, 0, hello(mut))))
	}
	v10 := slices.Clone(ch)
	v10[1] = 0xFF
	f.Add(uint8(1), scriptOf(plainRecord(typeClientHello, 0, 0, v10)))
	// Epoch-1 records before any key, alerts, a stray ChangeCipherSpec.
	early := appendRecordHeader(nil, contentHandshake, versionDTLS12, 1, 0, 40)
	early = append(early, make([]byte, 40)...)
	f.Add(uint8(1), append(scriptOf(plainRecord(typeClientHello, 0, 0, ch), early, early), scriptCmd(scriptTick, 60)...))
	f.Add(uint8(0), scriptOf(append(appendRecordHeader(nil, contentAlert, versionDTLS12, 0, 0, 2), alertLevelFatal, AlertHandshakeFailure)))
	f.Add(uint8(0), scriptOf(append(appendRecordHeader(nil, contentChangeCipherSpec, versionDTLS12, 0, 0, 1), 1)))

	f.Fuzz(func(t *testing.T, mode uint8, script []byte) {
		fx := fuzzFixtures(t)
		idx := int(mode & 3)
		rec := fx.recorded(t, idx).toServer
		d := newFuzzConn(t, fx, true, idx)
		d.run(script, rec)
	})
}

// FuzzClientConn feeds a started client Conn a script (see
// scriptRecorded); mode&1 picks the transcript recorded with a server that
// skips the cookie exchange.
func FuzzClientConn(f *testing.F) {
	fx := fuzzFixtures(f)
	for mode := range uint8(2) {
		f.Add(mode, recordedScript(16))
		f.Add(mode, recordedScript(16, scriptCmd(scriptTick, 200)...))
		// A real server's datagrams, made for another client random: they
		// fail at the ServerKeyExchange signature.
		tr := linkTranscript(f, fx, int(mode))
		f.Add(mode, scriptOf(tr.toClient...))
	}
	// Hand-made ServerHellos, alone and in a whole flight.
	serverHello := func(mut func(*serverHelloParams)) []byte {
		p := serverHelloParams{suite: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, profile: SRTPAEADAES128GCM,
			esid: testKDTLSID, ekt: EKTCipherAESKW128, pointFormats: true}
		if mut != nil {
			mut(&p)
		}
		return mustBytes(marshalServerHello(&p))
	}
	sh := serverHello(nil)
	cert := mustBytes(marshalCertificate(fx.serverCert.Certificate))
	ske := mustBytes(marshalServerKeyExchange(&serverKeyExchange{group: GroupX25519,
		public: bytes.Repeat([]byte{9}, 32), scheme: ECDSAWithP256AndSHA256, signature: bytes.Repeat([]byte{0x30}, 70)}))
	cr := mustBytes(marshalCertificateRequest())
	flight := func(sh []byte) []byte {
		return bytes.Join([][]byte{plainRecord(typeServerHello, 0, 0, sh), plainRecord(typeCertificate, 1, 1, cert),
			plainRecord(typeServerKeyExchange, 2, 2, ske), plainRecord(typeCertificateRequest, 3, 3, cr),
			plainRecord(typeServerHelloDone, 4, 4, nil)}, nil)
	}
	f.Add(uint8(0), scriptOf(flight(sh)))
	f.Add(uint8(0), scriptOf(fragmentRecords(typeServerHello, 0, 0, sh, 30)...))
	f.Add(uint8(0), scriptOf(plainRecord(typeHelloVerifyRequest, 0, 0, marshalHelloVerifyRequest(bytes.Repeat([]byte{7}, cookieLen))),
		plainRecord(typeServerHello, 1, 1, sh)))
	for _, mut := range []func(*serverHelloParams){
		func(p *serverHelloParams) { p.suite = 0x1301 },
		func(p *serverHelloParams) { p.profile = SRTPDoubleAES128GCM },
		func(p *serverHelloParams) { p.mki = []byte{1} },
		func(p *serverHelloParams) { p.ekt = EKTCipherAESKW256 },
		func(p *serverHelloParams) { p.esid = nil; p.ekt = 0; p.pointFormats = false },
		func(p *serverHelloParams) { p.suite = TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 },
	} {
		f.Add(uint8(0), scriptOf(flight(serverHello(mut))))
	}
	// Extensions the client did not offer, or without the mandatory ones.
	pre := sh[:2+randomLen+1+2+1]
	withExts := func(exts ...dtlsmsg.Extension) []byte {
		e := joinExtensions(exts)
		b := binary.BigEndian.AppendUint16(slices.Clone(pre), uint16(len(e)))
		return append(b, e...)
	}
	srtp, _ := dtlsmsg.AppendUseSRTP(nil, []uint16{SRTPAEADAES128GCM}, nil)
	for _, exts := range [][]dtlsmsg.Extension{
		{{Type: extUseSRTP, Data: srtp}},
		{{Type: extExtendedMaster}, {Type: extUseSRTP, Data: srtp}, {Type: 16, Data: []byte{0, 3, 2, 'h', '2'}}},
		{{Type: extExtendedMaster}, {Type: extUseSRTP, Data: srtp}, {Type: extRenegotiationInfo, Data: []byte{1, 0}}},
		{{Type: extExtendedMaster}, {Type: extUseSRTP, Data: srtp}, {Type: extECPointFormats, Data: []byte{1, 1}}},
		{{Type: extExtendedMaster}},
	} {
		f.Add(uint8(0), scriptOf(plainRecord(typeServerHello, 0, 0, withExts(exts...))))
	}
	v10 := slices.Clone(sh)
	v10[1] = 0xFF
	f.Add(uint8(0), scriptOf(plainRecord(typeServerHello, 0, 0, v10)))

	f.Fuzz(func(t *testing.T, mode uint8, script []byte) {
		fx := fuzzFixtures(t)
		rec := fx.recorded(t, int(mode&1)).toClient
		d := newFuzzConn(t, fx, false, 0)
		d.do("Start", false, func() error { return d.c.Start(d.now) })
		d.run(script, rec)
	})
}

// TestFuzzTranscriptReplays checks what the Conn targets' seeds rely on: a
// transcript recorded under fuzzConn replays to the end on either side.
func TestFuzzTranscriptReplays(t *testing.T) {
	fx := fuzzFixtures(t)
	for idx := range 4 {
		rec := fx.recorded(t, idx)
		s := newFuzzConn(t, fx, true, idx)
		s.run(recordedScript(len(rec.toServer), scriptCmd(scriptOwner, 0)...), rec.toServer)
		if !hasEvent(s.events, EventEKTKeyAcked) {
			t.Errorf("server config %d: replay ends with %v (%v)", idx, s.events, s.err)
		}
		if idx&2 != 0 {
			continue
		}
		c := newFuzzConn(t, fx, false, 0)
		c.do("Start", false, func() error { return c.c.Start(c.now) })
		c.run(recordedScript(len(rec.toClient)), rec.toClient)
		if !hasEvent(c.events, EventEKTKey) {
			t.Errorf("client against server config %d: replay ends with %v (%v)", idx, c.events, c.err)
		}
	}
}

// ---------------------------------------------------------------------
// Tampering with one datagram of a real handshake.

// maxTamperEdits bounds the edits of one input (the rest is ignored): more
// reach nothing new, and a long input takes minutes to minimise at a
// millisecond per handshake.
const maxTamperEdits = 16

// tamper is the edit FuzzLinkTamper makes to one datagram.
type tamper struct {
	index   int    // which datagram, counting both directions in the order sent
	cut     int    // octets cut off the end (modulo the length)
	edits   []byte // (uint16 position modulo the length, xor) triples
	seen    int
	done    *byte // first octet of the tampered datagram as delivered
	changed bool  // the datagram was changed
	fromC   bool  // it was the client's
	// finTouched: an edit or the cut hit an epoch-1 handshake record
	// (a Finished or an EKTKey).
	finTouched bool
}

func (tp *tamper) filter(fromClient bool, d []byte) [][]byte {
	i := tp.seen
	tp.seen++
	if i != tp.index || len(d) == 0 {
		return [][]byte{d}
	}
	// Where the epoch-1 handshake records of the original are.
	type span struct{ from, to int }
	var protected []span
	for rest := d; len(rest) > 0; {
		rec, next, err := dtlsmsg.NextRecord(rest)
		if err != nil {
			break
		}
		from := len(d) - len(rest)
		if rec.Epoch != 0 && rec.ContentType == contentHandshake {
			protected = append(protected, span{from, from + recordHeaderLen + len(rec.Fragment)})
		}
		rest = next
	}
	hit := func(p int) bool {
		return slices.ContainsFunc(protected, func(s span) bool { return p >= s.from && p < s.to })
	}
	out := slices.Clone(d)
	for j := 0; j+3 <= min(len(tp.edits), 3*maxTamperEdits); j += 3 {
		out[int(binary.BigEndian.Uint16(tp.edits[j:]))%len(out)] ^= tp.edits[j+2]
	}
	for p := range out { // edits may cancel out: compare
		if out[p] != d[p] {
			tp.changed = true
			tp.finTouched = tp.finTouched || hit(p)
		}
	}
	if c := tp.cut % len(d); c > 0 {
		out = out[:len(out)-c]
		tp.changed = true
		for p := len(out); p < len(d); p++ {
			tp.finTouched = tp.finTouched || hit(p)
		}
	}
	tp.fromC = fromClient
	if len(out) == 0 {
		return nil
	}
	tp.done = &out[0]
	return [][]byte{out}
}

// FuzzLinkTamper runs a full handshake, then one EKTKey, with the n-th
// datagram (both directions counted) edited: bits flipped at positions
// chosen by edits (up to maxTamperEdits triples: uint16 position, xor
// mask) and cut octets cut off its end. Whatever the edit, the two sides never complete with
// different keys, nobody completes on a Finished that was tampered with,
// the client never accepts an EKTKey the server did not send, and an edit
// that changed nothing leaves a complete handshake.
func FuzzLinkTamper(f *testing.F) {
	for n := range uint8(12) {
		f.Add(n, uint16(0), []byte{0, 0, 1})
		f.Add(n, uint16(0), []byte{0, 20, 0x80})
		f.Add(n, uint16(0), []byte{0xFF, 0xFF, 0x01})
		f.Add(n, uint16(1), []byte{})
	}
	f.Add(uint8(3), uint16(0), []byte{0, 13, 0xFF, 0, 14, 0xFF})
	f.Add(uint8(255), uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, n uint8, cut uint16, edits []byte) {
		fx := fuzzFixtures(t)
		cryptotest.SetGlobalRandom(t, 1)
		tp := &tamper{index: int(n), cut: int(cut), edits: edits}
		l := newLink(t, fx.client, fx.server[0])
		l.filter = tp.filter

		var keys [2][]byte    // exported when each side completed: client, server
		var masters [2][]byte // each side's exporter output once it had a master secret
		ektSent := false
		snapshot := func() {
			for i, c := range []*Conn{l.c, l.s} {
				if masters[i] == nil && c.master != nil {
					masters[i] = export(c.suite.hash, c.master, "EXTRACTOR-dtls_srtp", c.clientRandom[:], c.serverRandom[:], nil, false, 56)
				}
			}
		}
		// step delivers one datagram and checks what it caused.
		step := func(toServer bool, d []byte) {
			c, side, evs := l.c, 0, &l.cev
			if toServer {
				c, side, evs = l.s, 1, &l.sev
			}
			before := len(*evs)
			_ = c.HandleDatagram(l.now, d)
			snapshot()
			l.collect()
			for _, ev := range (*evs)[before:] {
				switch ev.Kind {
				case EventHandshakeComplete:
					if tp.finTouched && tp.fromC == toServer && len(d) > 0 && &d[0] == tp.done {
						t.Fatalf("side %d completed on the datagram whose Finished was tampered with", side)
					}
					k, err := c.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 56)
					if err != nil {
						t.Fatalf("side %d: export after completion: %v", side, err)
					}
					keys[side] = k
				case EventEKTKey:
					k := ev.EKTKey
					if !bytes.Equal(k.Key, fx.ekt.Key) || !bytes.Equal(k.MasterSalt, fx.ekt.MasterSalt) || k.SPI != fx.ekt.SPI || k.TTL != fx.ekt.TTL {
						t.Fatalf("client accepted %v, the server sent %v", k, fx.ekt)
					}
				case EventEKTKeyAcked:
					if ev.SPI != fx.ekt.SPI {
						t.Fatalf("server got an ACK for SPI %d", ev.SPI)
					}
				}
			}
		}
		run := func() {
			l.collect()
			for round := 0; round < 100 && len(l.toS)+len(l.toC) > 0; round++ {
				toS, toC := l.toS, l.toC
				l.toS, l.toC = nil, nil
				for _, d := range toS {
					step(true, d)
				}
				for _, d := range toC {
					step(false, d)
				}
				if !ektSent && l.s.Established() {
					ektSent = true
					if err := l.s.SendEKTKey(l.now, fx.ekt); err != nil {
						t.Fatalf("SendEKTKey: %v", err)
					}
					l.collect()
				}
			}
		}
		if err := l.c.Start(l.now); err != nil {
			t.Fatal(err)
		}
		run()
		for i := 0; i < 40 && !(hasEvent(l.sev, EventEKTKeyAcked) && hasEvent(l.cev, EventEKTKey)); i++ {
			dc, ds := l.c.Deadline(), l.s.Deadline()
			next := dc
			if next.IsZero() || !ds.IsZero() && ds.Before(next) {
				next = ds
			}
			if next.IsZero() {
				break
			}
			l.now = next
			_ = l.c.HandleTimeout(l.now)
			_ = l.s.HandleTimeout(l.now)
			snapshot()
			run()
		}

		// Both completed: the same keys. One completed: the keys its peer
		// derived, if the peer got that far.
		if keys[0] != nil && keys[1] != nil && !bytes.Equal(keys[0], keys[1]) {
			t.Fatalf("both sides completed with different keys:\nclient %x\nserver %x", keys[0], keys[1])
		}
		for side := range 2 {
			if keys[side] != nil && masters[1-side] != nil && !bytes.Equal(keys[side], masters[1-side]) {
				t.Fatalf("side %d completed with keys its peer does not have", side)
			}
		}
		if !tp.changed && (keys[0] == nil || keys[1] == nil || !hasEvent(l.cev, EventEKTKey) || !hasEvent(l.sev, EventEKTKeyAcked)) {
			t.Fatalf("untampered handshake did not finish: client %v (%v), server %v (%v)", l.cev, closedErr(l.cev), l.sev, closedErr(l.sev))
		}
	})
}
