package dtlsmsg

import "encoding/binary"

// Content types of the DTLS record layer (RFC 6347 section 4.1, RFC 9146).
const (
	ContentTypeChangeCipherSpec uint8 = 20
	ContentTypeAlert            uint8 = 21
	ContentTypeHandshake        uint8 = 22
	ContentTypeApplicationData  uint8 = 23
	ContentTypeHeartbeat        uint8 = 24
	ContentTypeTLS12CID         uint8 = 25
	ContentTypeACK              uint8 = 26
)

// Protocol versions as they appear on the wire.
const (
	VersionDTLS10 uint16 = 0xFEFF
	VersionDTLS12 uint16 = 0xFEFD
)

const (
	// RecordHeaderLen is the length of a DTLS 1.0/1.2 record header:
	// type(1) version(2) epoch(2) sequence_number(6) length(2).
	RecordHeaderLen = 13
	// MaxRecordLen is the largest record fragment RFC 6347 allows
	// (DTLSCiphertext, 2^14 + 2048).
	MaxRecordLen = 1<<14 + 2048
)

// IsDTLS reports whether a UDP payload starting with firstByte is DTLS under
// the demultiplexing rules of RFC 7983 section 7 (20..63).
func IsDTLS(firstByte byte) bool {
	return firstByte >= 20 && firstByte <= 63
}

// Record is one DTLS 1.0/1.2 record (RFC 6347 section 4.1). Fragment aliases
// the datagram it was read from.
type Record struct {
	// ContentType is one of the ContentType constants (or an unassigned
	// value in 20..31).
	ContentType uint8
	// Version is the record-layer protocol version (0xFEFD for DTLS 1.2;
	// a first ClientHello may carry 0xFEFF).
	Version uint16
	// Epoch is 0 for plaintext records.
	Epoch uint16
	// Sequence is the 48-bit record sequence number.
	Sequence uint64
	// Fragment is the record payload, len(Fragment) octets announced by the
	// header. It aliases the input.
	Fragment []byte
}

// NextRecord reads one record off the front of a datagram and returns it with
// the rest of the datagram (which may hold more records). It checks every
// length and never allocates. Errors (returned unwrapped): ErrNotDTLS,
// ErrUnsupportedRecord (the record's extent cannot be known, so the rest of
// the datagram cannot be read either), ErrBadVersion, ErrShortRecord, and
// ErrBadLength for a length above MaxRecordLen.
func NextRecord(b []byte) (rec Record, rest []byte, err error) {
	if len(b) == 0 {
		return Record{}, nil, ErrShortRecord
	}
	ct := b[0]
	switch {
	case !IsDTLS(ct):
		return Record{}, nil, ErrNotDTLS
	case ct == ContentTypeTLS12CID || ct&0xE0 == 0x20:
		return Record{}, nil, ErrUnsupportedRecord
	case len(b) < RecordHeaderLen:
		return Record{}, nil, ErrShortRecord
	case b[1] != 0xFE:
		return Record{}, nil, ErrBadVersion
	}
	n := int(binary.BigEndian.Uint16(b[11:13]))
	if n > MaxRecordLen {
		return Record{}, nil, ErrBadLength
	}
	if len(b)-RecordHeaderLen < n {
		return Record{}, nil, ErrShortRecord
	}
	rec = Record{
		ContentType: ct,
		Version:     binary.BigEndian.Uint16(b[1:3]),
		Epoch:       binary.BigEndian.Uint16(b[3:5]),
		Sequence:    uint64(binary.BigEndian.Uint16(b[5:7]))<<32 | uint64(binary.BigEndian.Uint32(b[7:11])),
		Fragment:    b[RecordHeaderLen : RecordHeaderLen+n : RecordHeaderLen+n],
	}
	return rec, b[RecordHeaderLen+n:], nil
}

// Handshake message types used by this package (RFC 6347 section 4.3.2).
const (
	HandshakeTypeClientHello        uint8 = 1
	HandshakeTypeServerHello        uint8 = 2
	HandshakeTypeHelloVerifyRequest uint8 = 3
)

// HandshakeHeaderLen is the length of a DTLS handshake header: msg_type(1)
// length(3) message_seq(2) fragment_offset(3) fragment_length(3).
const HandshakeHeaderLen = 12

// HandshakeHeader is the header of one DTLS handshake fragment (RFC 6347
// section 4.2.2).
type HandshakeHeader struct {
	// Type is the msg_type (1 ClientHello, 2 ServerHello, ...).
	Type uint8
	// Length is the length of the whole message body (uint24).
	Length uint32
	// MessageSeq numbers the handshake messages of one side.
	MessageSeq uint16
	// FragmentOffset and FragmentLength locate this fragment in the body.
	FragmentOffset uint32
	FragmentLength uint32
}

// NextHandshake reads one handshake fragment off the front of a handshake
// record's fragment (a record may carry several). It returns the header, the
// fragment octets (aliasing b) and the rest of b. It checks that the fragment
// is present in b (ErrShortHandshake) and lies inside its message
// (FragmentOffset+FragmentLength <= Length, else ErrBadFragment). Errors are
// returned unwrapped and it never allocates.
func NextHandshake(b []byte) (h HandshakeHeader, frag, rest []byte, err error) {
	if len(b) < HandshakeHeaderLen {
		return HandshakeHeader{}, nil, nil, ErrShortHandshake
	}
	h = HandshakeHeader{
		Type:           b[0],
		Length:         uint24(b[1:4]),
		MessageSeq:     binary.BigEndian.Uint16(b[4:6]),
		FragmentOffset: uint24(b[6:9]),
		FragmentLength: uint24(b[9:12]),
	}
	// All three are < 2^24: the sums below cannot overflow.
	if uint64(h.FragmentOffset)+uint64(h.FragmentLength) > uint64(h.Length) {
		return HandshakeHeader{}, nil, nil, ErrBadFragment
	}
	if uint64(len(b)-HandshakeHeaderLen) < uint64(h.FragmentLength) {
		return HandshakeHeader{}, nil, nil, ErrShortHandshake
	}
	end := HandshakeHeaderLen + int(h.FragmentLength)
	return h, b[HandshakeHeaderLen:end:end], b[end:], nil
}

func uint24(b []byte) uint32 {
	_ = b[2]
	return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
}
