package dtls

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// curveOf returns the crypto/ecdh curve of a group.
func curveOf(g Group) (ecdh.Curve, bool) {
	switch g {
	case GroupX25519:
		return ecdh.X25519(), true
	case GroupP256:
		return ecdh.P256(), true
	case GroupP384:
		return ecdh.P384(), true
	}
	return nil, false
}

// ecdhe computes the premaster secret from our private key and the peer's
// public point. crypto/ecdh checks the point is on the curve (NIST) and
// that an X25519 result is not all zeros. The result is the x-coordinate
// for NIST curves (RFC 8422 section 5.10) and the X25519 output (RFC 8422
// section 5.11).
func ecdhe(priv *ecdh.PrivateKey, peer []byte) ([]byte, error) {
	pub, err := priv.Curve().NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("peer ECDHE public value: %w", err)
	}
	secret, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("ECDHE: %w", err)
	}
	return secret, nil
}

// keyKind is the signature algorithm family of a public or private key.
func keyKind(pub crypto.PublicKey) (rsaKey bool, ok bool) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return false, k.Curve == elliptic.P256() || k.Curve == elliptic.P384()
	case *rsa.PublicKey:
		return true, true
	}
	return false, false
}

// schemeFitsKey reports whether scheme can be used with a key of that kind.
// TLS 1.2 does not bind an ECDSA scheme's hash to the key's curve.
func schemeFitsKey(s SignatureScheme, rsaKey bool) bool {
	_, kind, ok := schemeInfo(s)
	if !ok {
		return false
	}
	if rsaKey {
		return kind == sigPKCS1 || kind == sigPSS
	}
	return kind == sigECDSA
}

// chooseScheme picks the scheme to sign with: the first of ours (in our
// preference order) that the peer accepts and that fits our key, preferring
// the hash that matches an ECDSA key's curve.
func chooseScheme(signer crypto.Signer, peer []SignatureScheme) (SignatureScheme, bool) {
	rsaKey, ok := keyKind(signer.Public())
	if !ok {
		return 0, false
	}
	prefs := supportedSchemes
	if k, isEC := signer.Public().(*ecdsa.PublicKey); isEC && k.Curve == elliptic.P384() {
		prefs = []SignatureScheme{ECDSAWithP384AndSHA384, ECDSAWithP256AndSHA256}
	}
	for _, s := range prefs {
		if schemeFitsKey(s, rsaKey) && slices.Contains(peer, s) {
			return s, true
		}
	}
	return 0, false
}

func digest(h crypto.Hash, parts ...[]byte) []byte {
	d := h.New()
	for _, p := range parts {
		d.Write(p)
	}
	return d.Sum(nil)
}

// sign signs the concatenation of parts with scheme.
func sign(signer crypto.Signer, scheme SignatureScheme, parts ...[]byte) ([]byte, error) {
	h, kind, ok := schemeInfo(scheme)
	if !ok {
		return nil, fmt.Errorf("sign with scheme %#04x: unknown scheme", uint16(scheme))
	}
	var opts crypto.SignerOpts = h
	if kind == sigPSS {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
	}
	sig, err := signer.Sign(rand.Reader, digest(h, parts...), opts)
	if err != nil {
		return nil, fmt.Errorf("sign with scheme %#04x: %w", uint16(scheme), err)
	}
	return sig, nil
}

var errBadSignature = errors.New("signature does not verify")

// verify checks a signature over the concatenation of parts made with
// scheme by the key of cert.
func verify(pub crypto.PublicKey, scheme SignatureScheme, sig []byte, parts ...[]byte) error {
	h, kind, ok := schemeInfo(scheme)
	if !ok {
		return fmt.Errorf("scheme %#04x: unknown scheme", uint16(scheme))
	}
	d := digest(h, parts...)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if kind != sigECDSA || !ecdsa.VerifyASN1(k, d, sig) {
			return errBadSignature
		}
	case *rsa.PublicKey:
		var err error
		switch kind {
		case sigPKCS1:
			err = rsa.VerifyPKCS1v15(k, h, d, sig)
		case sigPSS:
			err = rsa.VerifyPSS(k, h, d, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
		default:
			err = errBadSignature
		}
		if err != nil {
			return errBadSignature
		}
	default:
		return errBadSignature
	}
	return nil
}

// minRSABits and maxRSABits bound the RSA modulus accepted from a peer.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// errCertificateDER is a leaf certificate whose DER does not reach a
// subjectPublicKeyInfo.
var errCertificateDER = errors.New("malformed certificate DER")

// leafSPKI returns the subjectPublicKeyInfo element of a DER X.509
// certificate (RFC 5280 section 4.1): Certificate is a SEQUENCE whose first
// element, tbsCertificate, is a SEQUENCE of an optional [0] version, the
// serialNumber INTEGER, then the signature, issuer, validity and subject
// SEQUENCEs, then subjectPublicKeyInfo. DTLS-SRTP authenticates a
// certificate by its fingerprint (RFC 8842), never by its chain, so the key
// is all the handshake needs of it; walking to it instead of parsing every
// name and extension keeps the parser of a peer's bytes small.
func leafSPKI(der []byte) ([]byte, error) {
	in := cryptobyte.String(der)
	var cert, tbs, spki cryptobyte.String
	if !in.ReadASN1(&cert, casn1.SEQUENCE) || !in.Empty() ||
		!cert.ReadASN1(&tbs, casn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(casn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.SkipASN1(casn1.INTEGER) {
		return nil, errCertificateDER
	}
	for range 4 { // signature, issuer, validity, subject
		if !tbs.SkipASN1(casn1.SEQUENCE) {
			return nil, errCertificateDER
		}
	}
	if !tbs.ReadASN1Element(&spki, casn1.SEQUENCE) {
		return nil, errCertificateDER
	}
	return spki, nil
}

// peerLeafKey parses the public key of the leaf of a peer chain, refusing
// key types and sizes the package does not accept.
func peerLeafKey(chain [][]byte) (crypto.PublicKey, *AlertError) {
	spki, err := leafSPKI(chain[0])
	if err != nil {
		return nil, &AlertError{Description: AlertBadCertificate, Err: fmt.Errorf("peer certificate: %w", err)}
	}
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return nil, &AlertError{Description: AlertBadCertificate, Err: fmt.Errorf("peer certificate: %w", err)}
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, alertf(AlertUnsupportedCertificate, "peer ECDSA key on %s", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		switch {
		case k.N.BitLen() < minRSABits:
			return nil, alertf(AlertInsufficientSecurity, "peer RSA key of %d bits", k.N.BitLen())
		case k.N.BitLen() > maxRSABits || k.E != 65537:
			// An unchecked self-signed certificate may carry any modulus:
			// bound the cost of verifying with it before VerifyPeer can
			// refuse it (as crypto/tls does since CVE-2023-29409).
			return nil, alertf(AlertUnsupportedCertificate, "peer RSA key of %d bits, exponent %d", k.N.BitLen(), k.E)
		}
	default:
		return nil, alertf(AlertUnsupportedCertificate, "peer key of type %T", pub)
	}
	return pub, nil
}
