package dtls

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// Handshake message bodies: builders and parsers. Every parser reads with a
// cryptobyte.String, checks every length against what is left and against
// the bounds of the RFC's declaration, and rejects trailing octets. A parse
// failure is a decode_error unless said otherwise.

var errDecode = errors.New("malformed message")

// decodeErr wraps a parse failure of message what as a decode_error alert.
func decodeErr(what string) *AlertError {
	return &AlertError{Description: AlertDecodeError, Err: fmt.Errorf("%s: %w", what, errDecode)}
}

// helloExtensions are the extensions of a ClientHello or ServerHello this
// package interprets, on top of what dtlsmsg parses (use_srtp,
// external_session_id).
type helloExtensions struct {
	groups       []Group
	hasGroups    bool
	pointFormats []byte
	hasPointFmts bool
	schemes      []SignatureScheme
	hasSchemes   bool
	ems          bool
	ektCiphers   []EKTCipher
	hasEKT       bool
	renegInfo    []byte
	hasRenegInfo bool
	types        []uint16 // every type, in order
}

// parseHelloExtensions interprets exts; server says whether they come from
// a ServerHello (supported_ekt_ciphers then holds one selected cipher).
func parseHelloExtensions(exts []dtlsmsg.Extension, server bool) (helloExtensions, *AlertError) {
	var he helloExtensions
	for _, e := range exts {
		he.types = append(he.types, e.Type)
		s := cryptobyte.String(e.Data)
		switch e.Type {
		case extSupportedGroups:
			var list cryptobyte.String
			if !s.ReadUint16LengthPrefixed(&list) || !s.Empty() || len(list) < 2 || len(list)%2 != 0 {
				return he, decodeErr("supported_groups")
			}
			for !list.Empty() {
				var g uint16
				list.ReadUint16(&g)
				he.groups = append(he.groups, Group(g))
			}
			he.hasGroups = true
		case extECPointFormats:
			var list cryptobyte.String
			if !s.ReadUint8LengthPrefixed(&list) || !s.Empty() || len(list) < 1 {
				return he, decodeErr("ec_point_formats")
			}
			he.pointFormats, he.hasPointFmts = list, true
		case extSignatureAlgorithms:
			var list cryptobyte.String
			if !s.ReadUint16LengthPrefixed(&list) || !s.Empty() || len(list) < 2 || len(list)%2 != 0 {
				return he, decodeErr("signature_algorithms")
			}
			for !list.Empty() {
				var v uint16
				list.ReadUint16(&v)
				he.schemes = append(he.schemes, SignatureScheme(v))
			}
			he.hasSchemes = true
		case extExtendedMaster:
			if !s.Empty() {
				return he, decodeErr("extended_master_secret")
			}
			he.ems = true
		case extSupportedEKTCiphers:
			if server {
				var c uint8
				if !s.ReadUint8(&c) || !s.Empty() {
					return he, decodeErr("supported_ekt_ciphers")
				}
				he.ektCiphers = []EKTCipher{EKTCipher(c)}
			} else {
				var list cryptobyte.String
				if !s.ReadUint8LengthPrefixed(&list) || !s.Empty() || len(list) < 1 {
					return he, decodeErr("supported_ekt_ciphers")
				}
				for _, c := range list {
					he.ektCiphers = append(he.ektCiphers, EKTCipher(c))
				}
			}
			he.hasEKT = true
		case extRenegotiationInfo:
			var v cryptobyte.String
			if !s.ReadUint8LengthPrefixed(&v) || !s.Empty() {
				return he, decodeErr("renegotiation_info")
			}
			he.renegInfo, he.hasRenegInfo = v, true
		}
	}
	return he, nil
}

// helloAlert maps a dtlsmsg hello parse error to its alert.
func helloAlert(what string, err error) *AlertError {
	switch {
	case errors.Is(err, dtlsmsg.ErrDuplicateExtension):
		return &AlertError{Description: AlertIllegalParameter, Err: fmt.Errorf("%s: %w", what, err)}
	case errors.Is(err, dtlsmsg.ErrBadVersion):
		return &AlertError{Description: AlertProtocolVersion, Err: fmt.Errorf("%s: %w", what, err)}
	}
	return &AlertError{Description: AlertDecodeError, Err: fmt.Errorf("%s: %w", what, err)}
}

// addExtension adds one extension whose data the continuation writes.
func addExtension(b *cryptobyte.Builder, typ uint16, data func(*cryptobyte.Builder)) {
	b.AddUint16(typ)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		if data != nil {
			data(b)
		}
	})
}

// clientHelloParams is what a client puts in its ClientHello.
type clientHelloParams struct {
	random     [randomLen]byte
	cookie     []byte
	suites     []uint16
	groups     []Group
	profiles   []uint16
	mki        []byte
	esid       []byte
	ektCiphers []EKTCipher
}

func marshalClientHello(p *clientHelloParams) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint16(versionDTLS12)
	b.AddBytes(p.random[:])
	b.AddUint8(0) // session_id: no resumption
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.cookie) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, s := range p.suites {
			b.AddUint16(s)
		}
	})
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) }) // null compression
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		addExtension(b, extExtendedMaster, nil)
		addExtension(b, extRenegotiationInfo, func(b *cryptobyte.Builder) { b.AddUint8(0) })
		addExtension(b, extSupportedGroups, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, g := range p.groups {
					b.AddUint16(uint16(g))
				}
			})
		})
		addExtension(b, extECPointFormats, func(b *cryptobyte.Builder) {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
		})
		addExtension(b, extSignatureAlgorithms, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, s := range supportedSchemes {
					b.AddUint16(uint16(s))
				}
			})
		})
		addExtension(b, extUseSRTP, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, pr := range p.profiles {
					b.AddUint16(pr)
				}
			})
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.mki) })
		})
		if len(p.ektCiphers) > 0 {
			addExtension(b, extSupportedEKTCiphers, func(b *cryptobyte.Builder) {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
					for _, c := range p.ektCiphers {
						b.AddUint8(uint8(c))
					}
				})
			})
		}
		if len(p.esid) > 0 {
			addExtension(b, extExternalSessionID, func(b *cryptobyte.Builder) {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.esid) })
			})
		}
	})
	return b.Bytes()
}

// serverHelloParams is what a server puts in its ServerHello.
type serverHelloParams struct {
	random       [randomLen]byte
	suite        uint16
	profile      uint16
	mki          []byte
	esid         []byte
	ekt          EKTCipher
	pointFormats bool // the client sent ec_point_formats
	renegInfo    bool // the client signalled secure renegotiation
}

func marshalServerHello(p *serverHelloParams) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint16(versionDTLS12)
	b.AddBytes(p.random[:])
	b.AddUint8(0) // empty session_id: not resumable
	b.AddUint16(p.suite)
	b.AddUint8(0)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		addExtension(b, extExtendedMaster, nil)
		if p.renegInfo {
			addExtension(b, extRenegotiationInfo, func(b *cryptobyte.Builder) { b.AddUint8(0) })
		}
		if p.pointFormats {
			addExtension(b, extECPointFormats, func(b *cryptobyte.Builder) {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
			})
		}
		addExtension(b, extUseSRTP, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(p.profile) })
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.mki) })
		})
		if p.ekt != 0 {
			addExtension(b, extSupportedEKTCiphers, func(b *cryptobyte.Builder) { b.AddUint8(uint8(p.ekt)) })
		}
		if len(p.esid) > 0 {
			addExtension(b, extExternalSessionID, func(b *cryptobyte.Builder) {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.esid) })
			})
		}
	})
	return b.Bytes()
}

// HelloVerifyRequest: server_version, cookie<0..2^8-1> (RFC 6347 section
// 4.2.1). RFC 6347 asks DTLS 1.2 servers to send version DTLS 1.0 here.
func marshalHelloVerifyRequest(cookie []byte) []byte {
	b := make([]byte, 0, 3+len(cookie))
	b = append(b, byte(versionDTLS10>>8), byte(versionDTLS10&0xFF), byte(len(cookie)))
	return append(b, cookie...)
}

func parseHelloVerifyRequest(body []byte) ([]byte, *AlertError) {
	s := cryptobyte.String(body)
	var v uint16
	var cookie cryptobyte.String
	if !s.ReadUint16(&v) || !s.ReadUint8LengthPrefixed(&cookie) || !s.Empty() {
		return nil, decodeErr("HelloVerifyRequest")
	}
	if v != versionDTLS10 && v != versionDTLS12 {
		return nil, alertf(AlertProtocolVersion, "HelloVerifyRequest version %#04x", v)
	}
	return slices.Clone([]byte(cookie)), nil
}

// Certificate: certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1>.
func marshalCertificate(chain [][]byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, c := range chain {
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c) })
		}
	})
	return b.Bytes()
}

// maxChain bounds the certificates accepted in one Certificate message.
const maxChain = 8

func parseCertificate(body []byte) ([][]byte, *AlertError) {
	s := cryptobyte.String(body)
	var list cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&list) || !s.Empty() {
		return nil, decodeErr("Certificate")
	}
	var chain [][]byte
	for !list.Empty() {
		var c cryptobyte.String
		if !list.ReadUint24LengthPrefixed(&c) || len(c) == 0 {
			return nil, decodeErr("Certificate entry")
		}
		if len(chain) == maxChain {
			return nil, alertf(AlertBadCertificate, "more than %d certificates", maxChain)
		}
		chain = append(chain, slices.Clone([]byte(c)))
	}
	return chain, nil
}

// ServerKeyExchange for ECDHE: ServerECDHParams (curve_type named_curve(3),
// NamedCurve, ECPoint public<1..2^8-1>) then DigitallySigned (RFC 8422
// section 5.4).
type serverKeyExchange struct {
	group     Group
	public    []byte
	scheme    SignatureScheme
	signature []byte
}

const curveTypeNamed = 3

// ecdhParams are the octets signed by the server: ServerECDHParams.
func ecdhParams(g Group, public []byte) []byte {
	b := []byte{curveTypeNamed, byte(g >> 8), byte(g), byte(len(public))}
	return append(b, public...)
}

func marshalServerKeyExchange(m *serverKeyExchange) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddBytes(ecdhParams(m.group, m.public))
	b.AddUint16(uint16(m.scheme))
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.signature) })
	return b.Bytes()
}

func parseServerKeyExchange(body []byte) (*serverKeyExchange, *AlertError) {
	s := cryptobyte.String(body)
	var ct uint8
	var g, scheme uint16
	var pub, sig cryptobyte.String
	if !s.ReadUint8(&ct) || !s.ReadUint16(&g) || !s.ReadUint8LengthPrefixed(&pub) || len(pub) == 0 ||
		!s.ReadUint16(&scheme) || !s.ReadUint16LengthPrefixed(&sig) || !s.Empty() {
		return nil, decodeErr("ServerKeyExchange")
	}
	if ct != curveTypeNamed {
		return nil, alertf(AlertIllegalParameter, "ServerKeyExchange curve_type %d", ct)
	}
	return &serverKeyExchange{group: Group(g), public: slices.Clone([]byte(pub)),
		scheme: SignatureScheme(scheme), signature: slices.Clone([]byte(sig))}, nil
}

// CertificateRequest (RFC 5246 section 7.4.4): certificate_types<1..2^8-1>,
// supported_signature_algorithms<2..2^16-2>,
// certificate_authorities<0..2^16-1> (always empty here: WebRTC
// certificates are self-signed).
func marshalCertificateRequest() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(certTypeECDSASign); b.AddUint8(certTypeRSASign) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, s := range supportedSchemes {
			b.AddUint16(uint16(s))
		}
	})
	b.AddUint16(0)
	return b.Bytes()
}

type certificateRequest struct {
	types   []byte
	schemes []SignatureScheme
}

func parseCertificateRequest(body []byte) (*certificateRequest, *AlertError) {
	s := cryptobyte.String(body)
	var types, algs, cas cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&types) || len(types) == 0 ||
		!s.ReadUint16LengthPrefixed(&algs) || len(algs) < 2 || len(algs)%2 != 0 ||
		!s.ReadUint16LengthPrefixed(&cas) || !s.Empty() {
		return nil, decodeErr("CertificateRequest")
	}
	cr := &certificateRequest{types: slices.Clone([]byte(types))}
	for !algs.Empty() {
		var v uint16
		algs.ReadUint16(&v)
		cr.schemes = append(cr.schemes, SignatureScheme(v))
	}
	return cr, nil
}

// ClientKeyExchange for ECDHE: ECPoint ecdh_Yc<1..2^8-1>.
func marshalClientKeyExchange(public []byte) []byte {
	return append([]byte{byte(len(public))}, public...)
}

func parseClientKeyExchange(body []byte) ([]byte, *AlertError) {
	s := cryptobyte.String(body)
	var pub cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&pub) || len(pub) == 0 || !s.Empty() {
		return nil, decodeErr("ClientKeyExchange")
	}
	return slices.Clone([]byte(pub)), nil
}

// DigitallySigned (CertificateVerify body): SignatureAndHashAlgorithm,
// signature<0..2^16-1>.
func marshalDigitallySigned(scheme SignatureScheme, sig []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint16(uint16(scheme))
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sig) })
	return b.Bytes()
}

func parseDigitallySigned(body []byte) (SignatureScheme, []byte, *AlertError) {
	s := cryptobyte.String(body)
	var scheme uint16
	var sig cryptobyte.String
	if !s.ReadUint16(&scheme) || !s.ReadUint16LengthPrefixed(&sig) || !s.Empty() {
		return 0, nil, decodeErr("CertificateVerify")
	}
	return SignatureScheme(scheme), []byte(sig), nil
}

// EKTKey is the body of the ekt_key handshake message (RFC 8870 section
// 5.2.2): the EKT key the client must use for EKTCiphertext values, the
// SRTP master salt that goes with the keys it wraps, the SPI naming both,
// and the key's lifetime in seconds (24 bits).
type EKTKey struct {
	Key        []byte
	MasterSalt []byte
	SPI        uint16
	TTL        uint32
}

// Zero overwrites the key and salt.
func (k *EKTKey) Zero() {
	clear(k.Key)
	clear(k.MasterSalt)
}

// String never prints key material.
func (k EKTKey) String() string {
	return fmt.Sprintf("EKTKey{spi %d, %d-octet key, %d-octet salt, ttl %ds}", k.SPI, len(k.Key), len(k.MasterSalt), k.TTL)
}

// maxEKTTTL is the largest uint24.
const maxEKTTTL = 1<<24 - 1

// check validates an EKTKey for cipher c (what the server sends and the
// client accepts).
func (k *EKTKey) check(c EKTCipher) error {
	switch {
	case len(k.Key) != c.KeyLen():
		return fmt.Errorf("EKTKey of %d octets for %v", len(k.Key), c)
	case len(k.MasterSalt) < 1 || len(k.MasterSalt) > 256:
		return fmt.Errorf("EKTKey srtp_master_salt of %d octets", len(k.MasterSalt))
	case k.TTL > maxEKTTTL:
		return fmt.Errorf("EKTKey ttl %d above 2^24-1", k.TTL)
	}
	return nil
}

// ekt_key_value<1..256> and srtp_master_salt<1..256> take a two-octet
// length: 256 does not fit in one (RFC 8446 section 3.4).
func marshalEKTKey(k *EKTKey) ([]byte, error) {
	// A buffer of the final size: a growing builder would leave copies of
	// the key behind.
	b := cryptobyte.NewFixedBuilder(make([]byte, 0, 2+len(k.Key)+2+len(k.MasterSalt)+2+3))
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(k.Key) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(k.MasterSalt) })
	b.AddUint16(k.SPI)
	b.AddUint24(k.TTL)
	return b.Bytes()
}

func parseEKTKey(body []byte) (*EKTKey, *AlertError) {
	s := cryptobyte.String(body)
	var key, salt cryptobyte.String
	var k EKTKey
	if !s.ReadUint16LengthPrefixed(&key) || len(key) < 1 || len(key) > 256 ||
		!s.ReadUint16LengthPrefixed(&salt) || len(salt) < 1 || len(salt) > 256 ||
		!s.ReadUint16(&k.SPI) || !s.ReadUint24(&k.TTL) || !s.Empty() {
		return nil, decodeErr("EKTKey")
	}
	k.Key, k.MasterSalt = slices.Clone([]byte(key)), slices.Clone([]byte(salt))
	return &k, nil
}

// recordNumber names a record in an ACK (RFC 9147 section 7: uint64 epoch,
// uint64 sequence_number).
type recordNumber struct {
	epoch uint64
	seq   uint64
}

// maxACKRecords bounds the record numbers one ACK carries (and that one
// received ACK may name before it is ignored as malformed).
const maxACKRecords = 64

func marshalACK(recs []recordNumber) []byte {
	b := make([]byte, 2, 2+16*len(recs))
	b[0], b[1] = byte(16*len(recs)>>8), byte(16*len(recs))
	for _, r := range recs {
		b = append(b, byte(r.epoch>>56), byte(r.epoch>>48), byte(r.epoch>>40), byte(r.epoch>>32),
			byte(r.epoch>>24), byte(r.epoch>>16), byte(r.epoch>>8), byte(r.epoch),
			byte(r.seq>>56), byte(r.seq>>48), byte(r.seq>>40), byte(r.seq>>32),
			byte(r.seq>>24), byte(r.seq>>16), byte(r.seq>>8), byte(r.seq))
	}
	return b
}

func parseACK(body []byte) ([]recordNumber, *AlertError) {
	s := cryptobyte.String(body)
	var list cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&list) || !s.Empty() || len(list)%16 != 0 || len(list) > 16*maxACKRecords {
		return nil, decodeErr("ACK")
	}
	recs := make([]recordNumber, 0, len(list)/16)
	for !list.Empty() {
		var r recordNumber
		list.ReadUint64(&r.epoch)
		list.ReadUint64(&r.seq)
		recs = append(recs, r)
	}
	return recs, nil
}
