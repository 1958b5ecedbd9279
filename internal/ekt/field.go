package ekt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The EKTField at the end of an SRTP packet (RFC 8870 section 4.1), read
// backwards from the last octet, its message type:
//
//	ShortEKTField     = 0x00
//	FullEKTField      = EKTCiphertext | SPI (2) | Epoch (2) | Length (2) | 0x02
//	ExtensionEKTField = ExtensionData | Length (2) | type (0x03..0xFF)
//
// Length counts the whole field, itself and the type included. Type 0x01
// is reserved; types below 64 other than 0x00 and 0x02 are not defined and
// make the field malformed; types from 64 up are extensions, skipped by
// their length.

// EKT message types.
const (
	TypeShort byte = 0x00
	TypeFull  byte = 0x02
	// TypeExtensionMin is the first type skipped by its length.
	TypeExtensionMin byte = 64
)

// Bounds of the fields (RFC 8870 section 4.1: EKTCiphertext 1..251 octets,
// ExtensionData 1..1024).
const (
	MaxCiphertext   = 251
	fullOverhead    = 2 + 2 + 2 + 1 // SPI, Epoch, Length, type
	MaxFullLen      = MaxCiphertext + fullOverhead
	maxExtensionLen = 1024 + 3
	// MaxFieldLen is the longest EKTField.
	MaxFieldLen = maxExtensionLen
)

// ErrField: a malformed EKTField (unknown or reserved type, a length that
// does not fit the packet or the type's bounds). Returned unwrapped by
// FieldLen so that the data plane can count it without allocating.
var ErrField = errors.New("ekt: malformed EKT field")

// FieldLen returns the length and type of the EKTField that ends pkt. It
// never allocates.
func FieldLen(pkt []byte) (int, byte, error) {
	if len(pkt) == 0 {
		return 0, 0, ErrField
	}
	typ := pkt[len(pkt)-1]
	switch {
	case typ == TypeShort:
		return 1, typ, nil
	case typ != TypeFull && typ < TypeExtensionMin:
		return 0, typ, ErrField
	case len(pkt) < 3:
		return 0, typ, ErrField
	}
	n := int(binary.BigEndian.Uint16(pkt[len(pkt)-3:]))
	lo, hi := 4, maxExtensionLen
	if typ == TypeFull {
		lo, hi = fullOverhead+1, MaxFullLen
	}
	if n < lo || n > hi || n > len(pkt) {
		return 0, typ, ErrField
	}
	return n, typ, nil
}

// Full is a FullEKTField.
type Full struct {
	Ciphertext []byte
	SPI        uint16
	Epoch      uint16
}

// ParseFull parses a whole FullEKTField (as FieldLen delimits it). The
// ciphertext aliases field.
func ParseFull(field []byte) (Full, error) {
	n, typ, err := FieldLen(field)
	if err != nil || typ != TypeFull || n != len(field) {
		return Full{}, fmt.Errorf("ekt: parse FullEKTField of %d octets: %w", len(field), ErrField)
	}
	end := len(field) - fullOverhead
	return Full{
		Ciphertext: field[:end:end],
		SPI:        binary.BigEndian.Uint16(field[end:]),
		Epoch:      binary.BigEndian.Uint16(field[end+2:]),
	}, nil
}

// AppendFull appends a FullEKTField to dst.
func AppendFull(dst []byte, f Full) ([]byte, error) {
	if len(f.Ciphertext) < 1 || len(f.Ciphertext) > MaxCiphertext {
		return dst, fmt.Errorf("ekt: FullEKTField with %d octets of ciphertext: %w", len(f.Ciphertext), ErrField)
	}
	dst = append(dst, f.Ciphertext...)
	dst = binary.BigEndian.AppendUint16(dst, f.SPI)
	dst = binary.BigEndian.AppendUint16(dst, f.Epoch)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(f.Ciphertext)+fullOverhead))
	return append(dst, TypeFull), nil
}

// AppendShort appends a ShortEKTField to dst.
func AppendShort(dst []byte) []byte { return append(dst, TypeShort) }

// maxMasterKey is the longest SRTPMasterKey of an EKTPlaintext (RFC 8870:
// 1..242 octets).
const maxMasterKey = 242

// SealKey builds the EKTPlaintext (SRTPMasterKeyLength | SRTPMasterKey |
// SSRC | ROC) and wraps it under kek: the EKTCiphertext of a FullEKTField.
func SealKey(kek, masterKey []byte, ssrc, roc uint32) ([]byte, error) {
	if len(masterKey) < 1 || len(masterKey) > maxMasterKey {
		return nil, fmt.Errorf("ekt: master key of %d octets", len(masterKey))
	}
	pt := make([]byte, 0, 1+len(masterKey)+8)
	pt = append(pt, byte(len(masterKey)))
	pt = append(pt, masterKey...)
	pt = binary.BigEndian.AppendUint32(pt, ssrc)
	pt = binary.BigEndian.AppendUint32(pt, roc)
	ct, err := Wrap(kek, pt)
	clear(pt)
	if err != nil {
		return nil, err
	}
	if len(ct) > MaxCiphertext {
		return nil, fmt.Errorf("ekt: EKTCiphertext of %d octets: %w", len(ct), ErrField)
	}
	return ct, nil
}

// OpenKey unwraps an EKTCiphertext under kek and parses the EKTPlaintext.
// It fails with ErrUnwrap when the ciphertext is not authentic and
// ErrField when the plaintext does not parse.
func OpenKey(kek, ciphertext []byte) (masterKey []byte, ssrc, roc uint32, err error) {
	pt, err := Unwrap(kek, ciphertext)
	if err != nil {
		return nil, 0, 0, err
	}
	defer clear(pt)
	if len(pt) < 1+1+8 || int(pt[0]) != len(pt)-9 {
		return nil, 0, 0, fmt.Errorf("ekt: EKTPlaintext of %d octets: %w", len(pt), ErrField)
	}
	k := int(pt[0])
	masterKey = make([]byte, k)
	copy(masterKey, pt[1:1+k])
	return masterKey, binary.BigEndian.Uint32(pt[1+k:]), binary.BigEndian.Uint32(pt[5+k:]), nil
}
