package dtls

import (
	"crypto"
	"fmt"
)

// Record content types (RFC 6347 section 4.1, RFC 9147 section 7).
const (
	contentChangeCipherSpec uint8 = 20
	contentAlert            uint8 = 21
	contentHandshake        uint8 = 22
	contentApplicationData  uint8 = 23
	contentACK              uint8 = 26
)

// Protocol versions on the wire.
const (
	versionDTLS10 uint16 = 0xFEFF
	versionDTLS12 uint16 = 0xFEFD
)

// Handshake message types (RFC 5246 section 7.4, RFC 6347 section 4.3.2,
// RFC 8870 section 5.2.2).
const (
	typeHelloRequest       uint8 = 0
	typeClientHello        uint8 = 1
	typeServerHello        uint8 = 2
	typeHelloVerifyRequest uint8 = 3
	typeCertificate        uint8 = 11
	typeServerKeyExchange  uint8 = 12
	typeCertificateRequest uint8 = 13
	typeServerHelloDone    uint8 = 14
	typeCertificateVerify  uint8 = 15
	typeClientKeyExchange  uint8 = 16
	typeFinished           uint8 = 20
	typeEKTKey             uint8 = 26
)

// Extension types read or written (IANA TLS ExtensionType registry).
const (
	extSupportedGroups     uint16 = 10
	extECPointFormats      uint16 = 11
	extSignatureAlgorithms uint16 = 13
	extUseSRTP             uint16 = 14
	extExtendedMaster      uint16 = 23
	extSupportedEKTCiphers uint16 = 39
	extExternalSessionID   uint16 = 56
	extRenegotiationInfo   uint16 = 0xFF01
)

// scsvRenegotiation is TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 section 3.3).
const scsvRenegotiation uint16 = 0x00FF

// Cipher suites (RFC 5289).
const (
	TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 uint16 = 0xC02B //nolint:revive // IANA names
	TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 uint16 = 0xC02C //nolint:revive
	TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256   uint16 = 0xC02F //nolint:revive
	TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384   uint16 = 0xC030 //nolint:revive
)

// DefaultCipherSuites is the server's preference order and the client's
// offer: ECDSA first (WebRTC's default), 128-bit first.
var DefaultCipherSuites = []uint16{
	TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// suite describes a cipher suite: AES-GCM key length, PRF hash, and the
// authentication (signature) key type.
type suite struct {
	id     uint16
	keyLen int
	hash   crypto.Hash
	rsa    bool // ECDHE_RSA; otherwise ECDHE_ECDSA
}

func suiteByID(id uint16) (suite, bool) {
	switch id {
	case TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:
		return suite{id, 16, crypto.SHA256, false}, true
	case TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:
		return suite{id, 32, crypto.SHA384, false}, true
	case TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:
		return suite{id, 16, crypto.SHA256, true}, true
	case TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return suite{id, 32, crypto.SHA384, true}, true
	}
	return suite{}, false
}

// Group is a named group for ECDHE (RFC 8422, RFC 7748).
type Group uint16

// The groups the package implements.
const (
	GroupP256   Group = 23
	GroupP384   Group = 24
	GroupX25519 Group = 29
)

// DefaultGroups is the offer and the server's preference.
var DefaultGroups = []Group{GroupX25519, GroupP256, GroupP384}

// SignatureScheme is a TLS 1.2 SignatureAndHashAlgorithm (hash octet,
// signature octet), numbered as the TLS 1.3 SignatureScheme registry does.
type SignatureScheme uint16

// The signature schemes the package implements.
const (
	ECDSAWithP256AndSHA256 SignatureScheme = 0x0403
	ECDSAWithP384AndSHA384 SignatureScheme = 0x0503
	PKCS1WithSHA256        SignatureScheme = 0x0401
	PKCS1WithSHA384        SignatureScheme = 0x0501
	PSSWithSHA256          SignatureScheme = 0x0804
	PSSWithSHA384          SignatureScheme = 0x0805
)

// supportedSchemes is what the package sends in signature_algorithms and
// CertificateRequest, and accepts from a peer.
var supportedSchemes = []SignatureScheme{
	ECDSAWithP256AndSHA256, ECDSAWithP384AndSHA384,
	PSSWithSHA256, PSSWithSHA384,
	PKCS1WithSHA256, PKCS1WithSHA384,
}

type sigKind uint8

const (
	sigECDSA sigKind = iota + 1
	sigPKCS1
	sigPSS
)

// schemeInfo returns the hash and the signature algorithm of a scheme.
func schemeInfo(s SignatureScheme) (crypto.Hash, sigKind, bool) {
	switch s {
	case ECDSAWithP256AndSHA256:
		return crypto.SHA256, sigECDSA, true
	case ECDSAWithP384AndSHA384:
		return crypto.SHA384, sigECDSA, true
	case PKCS1WithSHA256:
		return crypto.SHA256, sigPKCS1, true
	case PKCS1WithSHA384:
		return crypto.SHA384, sigPKCS1, true
	case PSSWithSHA256:
		return crypto.SHA256, sigPSS, true
	case PSSWithSHA384:
		return crypto.SHA384, sigPSS, true
	}
	return 0, 0, false
}

// SRTP protection profiles (RFC 5764, RFC 7714, RFC 8723).
const (
	SRTPAES128CMHMACSHA180 uint16 = 0x0001
	SRTPAES128CMHMACSHA132 uint16 = 0x0002
	SRTPAEADAES128GCM      uint16 = 0x0007
	SRTPAEADAES256GCM      uint16 = 0x0008
	SRTPDoubleAES128GCM    uint16 = 0x0009
	SRTPDoubleAES256GCM    uint16 = 0x000A
)

// SRTPProfileKnown reports whether the package negotiates profile p.
func SRTPProfileKnown(p uint16) bool {
	switch p {
	case SRTPAES128CMHMACSHA180, SRTPAES128CMHMACSHA132, SRTPAEADAES128GCM,
		SRTPAEADAES256GCM, SRTPDoubleAES128GCM, SRTPDoubleAES256GCM:
		return true
	}
	return false
}

// EKTCipher is an EKTCipherType (RFC 8870 section 5.2.1).
type EKTCipher uint8

// EKT ciphers (RFC 8870 section 4.4 and 7.3).
const (
	EKTCipherAESKW128 EKTCipher = 1
	EKTCipherAESKW256 EKTCipher = 2
)

// KeyLen returns the EKTKey length of the cipher, 0 if unknown.
func (e EKTCipher) KeyLen() int {
	switch e {
	case EKTCipherAESKW128:
		return 16
	case EKTCipherAESKW256:
		return 32
	}
	return 0
}

func (e EKTCipher) String() string {
	switch e {
	case EKTCipherAESKW128:
		return "AESKW_128"
	case EKTCipherAESKW256:
		return "AESKW_256"
	}
	return fmt.Sprintf("EKTCipher(%d)", uint8(e))
}

// Certificate types of a CertificateRequest (RFC 5246 section 7.4.4, RFC
// 8422 section 5.5).
const (
	certTypeRSASign   uint8 = 1
	certTypeECDSASign uint8 = 64
)

// Lengths fixed by the protocol.
const (
	recordHeaderLen    = 13
	handshakeHeaderLen = 12
	randomLen          = 32
	masterSecretLen    = 48
	verifyDataLen      = 12
	gcmExplicitNonce   = 8
	gcmTagLen          = 16
	gcmImplicitIVLen   = 4
	maxSeq             = 1<<48 - 1
	// recordOverhead is what an epoch-1 AES-GCM record adds to its
	// plaintext: header, explicit nonce, tag.
	recordOverhead = recordHeaderLen + gcmExplicitNonce + gcmTagLen
	// maxPlaintext is the largest record plaintext (RFC 6347 section 4.1:
	// 2^14).
	maxPlaintext = 1 << 14
)
