package dtlsmsg

import (
	"errors"
	"fmt"
)

// DefaultMaxMessageLen is the maximum handshake message length a
// Reassembler buffers when NewReassembler is given 0 or less.
const DefaultMaxMessageLen = 16 << 10

// maxHandshakeLen is the largest length a uint24 handshake length can hold.
const maxHandshakeLen = 1<<24 - 1

// assembler collects the fragments of one handshake message type, one
// message (one message_seq) at a time. It is shared by Reassembler and
// ServerHelloReassembler.
type assembler struct {
	msgType uint8
	maxLen  int

	// The message in progress, when active.
	active bool
	seq    uint16
	length int
	buf    []byte // len == length
	have   []byte // coverage bitmap, one bit per octet of buf
	got    int    // octets of buf covered so far

	// The highest message_seq completed (yielded or failed to parse), when
	// done. Fragments of it or of an older message are retransmissions.
	done    bool
	doneSeq uint16
}

func (a *assembler) reset() {
	a.active, a.done = false, false
	a.seq, a.doneSeq, a.length, a.got = 0, 0, 0, 0
	a.buf, a.have = a.buf[:0], a.have[:0]
}

// feed processes every epoch 0 handshake record of a datagram. It returns
// the body of the newest message completed by this datagram (a fresh copy)
// with its message_seq, or the first error met. Records that cannot be
// plaintext handshake records end the datagram quietly.
func (a *assembler) feed(datagram []byte) (body []byte, seq uint16, err error) {
	var firstErr error
	keep := func(e error) {
		if firstErr == nil {
			firstErr = e
		}
	}
	for rest := datagram; len(rest) > 0; {
		var rec Record
		var rerr error
		rec, rest, rerr = NextRecord(rest)
		if errors.Is(rerr, ErrUnsupportedRecord) {
			break // CID or DTLS 1.3 ciphertext: never a plaintext hello
		}
		if rerr != nil {
			keep(fmt.Errorf("reading record at offset %d: %w", len(datagram)-len(rest), rerr))
			break
		}
		if rec.ContentType != ContentTypeHandshake || rec.Epoch != 0 {
			continue
		}
		for frag := rec.Fragment; len(frag) > 0; {
			var h HandshakeHeader
			var part []byte
			var herr error
			h, part, frag, herr = NextHandshake(frag)
			if herr != nil {
				keep(fmt.Errorf("reading handshake fragment in record %d: %w", rec.Sequence, herr))
				break // the rest of this record cannot be delimited
			}
			if h.Type != a.msgType {
				continue
			}
			complete, ferr := a.add(h, part)
			if ferr != nil {
				keep(ferr)
				continue
			}
			if complete {
				body = make([]byte, len(a.buf)) // non-nil even when empty
				copy(body, a.buf)
				seq = h.MessageSeq
				a.active = false
				a.done, a.doneSeq = true, h.MessageSeq
			}
		}
	}
	if body != nil {
		return body, seq, nil
	}
	return nil, 0, firstErr
}

// add stores one fragment and reports whether its message is complete.
func (a *assembler) add(h HandshakeHeader, part []byte) (bool, error) {
	if a.done && h.MessageSeq <= a.doneSeq {
		return false, nil // retransmission of a finished message
	}
	if a.active && h.MessageSeq < a.seq {
		return false, nil // fragment of a message already superseded
	}
	if !a.active || h.MessageSeq > a.seq {
		if int64(h.Length) > int64(a.maxLen) {
			return false, fmt.Errorf("handshake message_seq %d of %d octets (limit %d): %w",
				h.MessageSeq, h.Length, a.maxLen, ErrTooLarge)
		}
		a.start(h.MessageSeq, int(h.Length))
	}
	if int(h.Length) != a.length {
		return false, fmt.Errorf("handshake message_seq %d: fragment says %d octets, earlier ones %d: %w",
			h.MessageSeq, h.Length, a.length, ErrBadFragment)
	}
	off := int(h.FragmentOffset) // NextHandshake checked off+len(part) <= Length
	// Check before writing, so that a conflicting fragment changes nothing.
	for i, c := range part {
		j := off + i
		if a.have[j>>3]&(1<<(j&7)) != 0 && a.buf[j] != c {
			return false, fmt.Errorf("handshake message_seq %d: fragment at %d+%d differs from earlier octets: %w",
				h.MessageSeq, off, len(part), ErrBadFragment)
		}
	}
	for i, c := range part {
		j := off + i
		if a.have[j>>3]&(1<<(j&7)) == 0 {
			a.have[j>>3] |= 1 << (j & 7)
			a.buf[j] = c
			a.got++
		}
	}
	return a.got == a.length, nil
}

// start begins a new message, reusing the buffers when they are big enough.
func (a *assembler) start(seq uint16, length int) {
	a.active, a.seq, a.length, a.got = true, seq, length, 0
	nb := (length + 7) / 8
	if cap(a.buf) < length {
		a.buf = make([]byte, length)
	}
	if cap(a.have) < nb {
		a.have = make([]byte, nb)
	}
	a.buf = a.buf[:length]
	a.have = a.have[:nb]
	clear(a.have)
}

func clampMaxLen(maxLen int) int {
	switch {
	case maxLen <= 0:
		return DefaultMaxMessageLen
	case maxLen > maxHandshakeLen:
		return maxHandshakeLen
	}
	return maxLen
}

// Reassembler collects the fragments of the endpoint's ClientHello from the
// datagrams it sends on one association: epoch 0 handshake records with
// msg_type client_hello, fragments in any order, overlapping or repeated.
// It holds at most one message in progress, never more than its maximum
// length plus an eighth of it for the coverage bitmap. The first octets
// received for a position win and a higher message_seq supersedes a lower
// one, so whoever can inject datagrams on the association's 5-tuple can
// spoil its ClientHello; feed only datagrams of that one 5-tuple. A
// Reassembler is not safe for concurrent use; use one per association.
type Reassembler struct {
	a assembler
}

// NewReassembler returns a Reassembler that buffers ClientHello messages of
// at most maxLen octets (DefaultMaxMessageLen when maxLen <= 0; at most
// 2^24-1).
func NewReassembler(maxLen int) *Reassembler {
	return &Reassembler{a: assembler{msgType: HandshakeTypeClientHello, maxLen: clampMaxLen(maxLen)}}
}

// Feed processes one datagram received from the endpoint. It returns a
// non-nil ClientHello the first time the message with a given message_seq
// is complete; a later ClientHello with a higher message_seq (the one
// carrying the cookie after a HelloVerifyRequest) yields again, while
// retransmissions of a completed or superseded message are ignored. While
// the message is incomplete it returns nil, nil. Records that are not epoch
// 0 handshake records, and handshake fragments of other types, are ignored.
//
// Feed reads every record of the datagram; when one completes a ClientHello
// it returns it and no error. Otherwise it returns the first problem: a
// datagram that is not DTLS (ErrNotDTLS) or is truncated (ErrShortRecord,
// ErrShortHandshake, ErrBadVersion, ErrBadLength), a fragment that is too
// large (ErrTooLarge, not buffered) or contradicts earlier ones
// (ErrBadFragment, dropped; the earlier octets win), or a complete
// ClientHello that does not parse (the errors of ParseClientHello; that
// message_seq then counts as done). After an error the Reassembler stays
// usable. The returned ClientHello owns its memory.
func (r *Reassembler) Feed(datagram []byte) (*ClientHello, error) {
	body, seq, err := r.a.feed(datagram)
	if err != nil || body == nil {
		return nil, err
	}
	ch, err := ParseClientHello(body)
	if err != nil {
		return nil, fmt.Errorf("ClientHello message_seq %d: %w", seq, err)
	}
	ch.MessageSeq = seq
	return ch, nil
}

// Reset forgets every fragment and completed message, keeping the buffers
// for reuse, so that the Reassembler can serve a new association.
func (r *Reassembler) Reset() { r.a.reset() }

// ServerHelloReassembler is the Reassembler for the ServerHello, fed with
// the datagrams a DTLS client receives from its server (a client or a test
// reading the server's external_session_id and selected SRTP profile). The
// same rules apply; other handshake messages of the server's flight are
// ignored.
type ServerHelloReassembler struct {
	a assembler
}

// NewServerHelloReassembler returns a ServerHelloReassembler that buffers
// ServerHello messages of at most maxLen octets (DefaultMaxMessageLen when
// maxLen <= 0).
func NewServerHelloReassembler(maxLen int) *ServerHelloReassembler {
	return &ServerHelloReassembler{a: assembler{msgType: HandshakeTypeServerHello, maxLen: clampMaxLen(maxLen)}}
}

// Feed processes one datagram received from the server, with the semantics
// of Reassembler.Feed, and returns the ServerHello once complete.
func (r *ServerHelloReassembler) Feed(datagram []byte) (*ServerHello, error) {
	body, seq, err := r.a.feed(datagram)
	if err != nil || body == nil {
		return nil, err
	}
	sh, err := ParseServerHello(body)
	if err != nil {
		return nil, fmt.Errorf("ServerHello message_seq %d: %w", seq, err)
	}
	sh.MessageSeq = seq
	return sh, nil
}

// Reset forgets every fragment and completed message.
func (r *ServerHelloReassembler) Reset() { r.a.reset() }
