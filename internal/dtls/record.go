package dtls

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
)

// gcmState protects or unprotects the records of one direction of epoch 1
// with AES-GCM (RFC 5288 section 3, RFC 6347 section 4.1.2.1): nonce =
// implicit IV (4) | explicit nonce (8, here the record's epoch and sequence
// number, unique per key), additional data = epoch | sequence (8) | type |
// version | plaintext length.
type gcmState struct {
	aead cipher.AEAD
	iv   [gcmImplicitIVLen]byte
}

func newGCMState(key, iv []byte) (*gcmState, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("dtls: record key: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("dtls: record AEAD: %w", err)
	}
	g := &gcmState{aead: a}
	copy(g.iv[:], iv)
	return g, nil
}

func (g *gcmState) zero() {
	// cipher.AEAD holds its expanded key unexported; dropping the last
	// reference is what Go allows. The implicit IV is ours to clear.
	g.aead = nil
	clear(g.iv[:])
}

func additionalData(epochSeq uint64, typ uint8, version uint16, n int) [13]byte {
	var ad [13]byte
	binary.BigEndian.PutUint64(ad[:8], epochSeq)
	ad[8] = typ
	binary.BigEndian.PutUint16(ad[9:11], version)
	binary.BigEndian.PutUint16(ad[11:13], uint16(n))
	return ad
}

// seal appends one protected record (header included) to dst.
func (g *gcmState) seal(dst []byte, typ uint8, epoch uint16, seq uint64, plaintext []byte) []byte {
	es := uint64(epoch)<<48 | seq
	dst = appendRecordHeader(dst, typ, versionDTLS12, epoch, seq, gcmExplicitNonce+len(plaintext)+gcmTagLen)
	var nonce [12]byte
	copy(nonce[:4], g.iv[:])
	binary.BigEndian.PutUint64(nonce[4:], es)
	dst = append(dst, nonce[4:]...)
	ad := additionalData(es, typ, versionDTLS12, len(plaintext))
	return g.aead.Seal(dst, nonce[:], plaintext, ad[:])
}

var errBadRecordMAC = errors.New("dtls: record failed authentication")

// open authenticates and decrypts a record fragment into a new buffer (the
// caller's datagram is left as it was).
func (g *gcmState) open(typ uint8, version uint16, epoch uint16, seq uint64, fragment []byte) ([]byte, error) {
	if len(fragment) < gcmExplicitNonce+gcmTagLen {
		return nil, errBadRecordMAC
	}
	var nonce [12]byte
	copy(nonce[:4], g.iv[:])
	copy(nonce[4:], fragment[:gcmExplicitNonce])
	ct := fragment[gcmExplicitNonce:]
	ad := additionalData(uint64(epoch)<<48|seq, typ, version, len(ct)-gcmTagLen)
	pt, err := g.aead.Open(nil, nonce[:], ct, ad[:])
	if err != nil {
		return nil, errBadRecordMAC
	}
	return pt, nil
}

// appendRecordHeader appends a DTLS record header.
func appendRecordHeader(dst []byte, typ uint8, version, epoch uint16, seq uint64, n int) []byte {
	dst = append(dst, typ, byte(version>>8), byte(version), byte(epoch>>8), byte(epoch),
		byte(seq>>40), byte(seq>>32), byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq))
	return binary.BigEndian.AppendUint16(dst, uint16(n))
}

// replayWindow is the anti-replay sliding window of RFC 6347 section
// 4.1.2.6 (RFC 4303 section 3.4.3) for one epoch, 64 records wide. It is
// updated only after a record authenticates.
type replayWindow struct {
	seen    bool
	highest uint64
	bits    uint64 // bit i: highest-i was received
}

const replayWindowSize = 64

// check reports whether seq may be accepted (not a replay, not too old).
func (w *replayWindow) check(seq uint64) bool {
	switch {
	case !w.seen || seq > w.highest:
		return true
	case w.highest-seq >= replayWindowSize:
		return false
	}
	return w.bits&(1<<(w.highest-seq)) == 0
}

// mark records seq as received; call only after check and authentication.
func (w *replayWindow) mark(seq uint64) {
	switch {
	case !w.seen:
		w.seen, w.highest, w.bits = true, seq, 1
	case seq > w.highest:
		if d := seq - w.highest; d >= replayWindowSize {
			w.bits = 1
		} else {
			w.bits = w.bits<<d | 1
		}
		w.highest = seq
	default:
		w.bits |= 1 << (w.highest - seq)
	}
}
