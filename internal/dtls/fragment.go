package dtls

import "github.com/mdfast/mdfast/internal/dtlsmsg"

// The handshake message layer (RFC 6347 section 4.2.2 and 4.2.3): incoming
// fragments are reassembled into whole messages handed on in message_seq
// order; outgoing messages are cut into fragments that fit the MTU and
// packed into datagrams.

// handshakeWindow is how many messages past the next expected one are
// buffered (a whole flight of the server, five messages, fits).
const handshakeWindow = 8

// inMessage is one incoming handshake message being reassembled.
type inMessage struct {
	typ   uint8
	seq   uint16
	epoch uint16
	body  []byte
	have  []byte // one bit per octet of body
	got   int
}

func (m *inMessage) complete() bool { return m.got == len(m.body) }

// reassembler holds the messages of the window [next, next+handshakeWindow).
type reassembler struct {
	next     uint16
	slots    [handshakeWindow]*inMessage // slots[i] holds message next+i
	buffered int                         // octets held (bodies and bitmaps)
	maxMsg   int
	maxTotal int
}

// fragment outcomes that are not errors.
type fragOutcome uint8

const (
	fragStored fragOutcome = iota // stored (or a harmless repeat)
	fragOld                       // belongs to a message already handed on: a retransmission
	fragBeyond                    // past the window: dropped
	fragNoRoom                    // the reassembly budget is spent: dropped
	fragEpoch                     // same message_seq seen in another epoch: dropped
)

// add stores one fragment received in epoch. A fragment that contradicts
// what is known of its message (type, length, octets) or announces a
// message above the size limit fails the handshake.
func (r *reassembler) add(epoch uint16, h dtlsmsg.HandshakeHeader, frag []byte) (fragOutcome, *AlertError) {
	d := h.MessageSeq - r.next // uint16 arithmetic: "older" wraps to >= 0x8000
	switch {
	case d >= 0x8000:
		return fragOld, nil
	case d >= handshakeWindow:
		return fragBeyond, nil
	case int64(h.Length) > int64(r.maxMsg):
		return 0, alertf(AlertIllegalParameter, "handshake message_seq %d of %d octets (limit %d)", h.MessageSeq, h.Length, r.maxMsg)
	}
	m := r.slots[d]
	if m == nil {
		cost := int(h.Length) + (int(h.Length)+7)/8
		if r.buffered+cost > r.maxTotal {
			return fragNoRoom, nil
		}
		m = &inMessage{typ: h.Type, seq: h.MessageSeq, epoch: epoch,
			body: make([]byte, h.Length), have: make([]byte, (h.Length+7)/8)}
		r.buffered += cost
		r.slots[d] = m
	}
	switch {
	case m.epoch != epoch && epoch > m.epoch && !m.complete():
		// An authenticated (epoch 1) fragment outranks unauthenticated
		// ones of the same message_seq: a forged plaintext fragment must
		// not block the real Finished.
		r.buffered -= len(m.body) + len(m.have)
		r.slots[d] = nil
		return r.add(epoch, h, frag)
	case m.epoch != epoch:
		return fragEpoch, nil
	case m.typ != h.Type || len(m.body) != int(h.Length):
		return 0, alertf(AlertDecodeError, "handshake message_seq %d: fragment says type %d length %d, earlier ones type %d length %d",
			h.MessageSeq, h.Type, h.Length, m.typ, len(m.body))
	}
	off := int(h.FragmentOffset) // NextHandshake checked off+len(frag) <= Length
	for i, b := range frag {
		j := off + i
		if m.have[j>>3]&(1<<(j&7)) != 0 && m.body[j] != b {
			return 0, alertf(AlertDecodeError, "handshake message_seq %d: fragment %d+%d contradicts earlier octets",
				h.MessageSeq, off, len(frag))
		}
	}
	for i, b := range frag {
		j := off + i
		if m.have[j>>3]&(1<<(j&7)) == 0 {
			m.have[j>>3] |= 1 << (j & 7)
			m.body[j] = b
			m.got++
		}
	}
	return fragStored, nil
}

// pop returns the next message in order if it is complete, and moves the
// window past it.
func (r *reassembler) pop() *inMessage {
	m := r.slots[0]
	if m == nil || !m.complete() {
		return nil
	}
	copy(r.slots[:], r.slots[1:])
	r.slots[handshakeWindow-1] = nil
	r.next++
	r.buffered -= len(m.body) + len(m.have)
	m.have = nil
	return m
}

// reset empties the window and expects next.
func (r *reassembler) reset(next uint16) {
	for i, m := range r.slots {
		if m != nil {
			clear(m.body)
		}
		r.slots[i] = nil
	}
	r.next, r.buffered = next, 0
}

// outMessage is one outgoing handshake message (or, when ccs, a
// ChangeCipherSpec) of a flight.
type outMessage struct {
	ccs   bool
	typ   uint8
	seq   uint16
	epoch uint16
	body  []byte
}

func appendHandshakeHeader(dst []byte, typ uint8, length int, seq uint16, off, n int) []byte {
	return append(dst, typ, byte(length>>16), byte(length>>8), byte(length),
		byte(seq>>8), byte(seq), byte(off>>16), byte(off>>8), byte(off),
		byte(n>>16), byte(n>>8), byte(n))
}

// transcriptBytes appends a message in transcript form.
func transcriptBytes(dst []byte, typ uint8, seq uint16, body []byte) []byte {
	dst = appendHandshakeHeader(dst, typ, len(body), seq, 0, len(body))
	return append(dst, body...)
}

// sentRecord remembers which record carried which message, for the ACKs of
// post-handshake messages.
type sentRecord struct {
	epoch uint16
	seq   uint64
	msg   uint16
}

// writeFlight serialises msgs into datagrams of at most mtu octets, using
// and advancing the record sequence numbers of c, and appends them to
// c.out. Records of epoch 1 are sealed with c.writeCipher. It returns the
// records written (for ACK tracking).
func (c *Conn) writeFlight(msgs []outMessage) []sentRecord {
	var sent []sentRecord
	mtu := c.cfg.MTU
	var dg []byte
	flush := func() {
		if len(dg) > 0 {
			c.out = append(c.out, dg)
			dg = nil
		}
	}
	room := func(epoch uint16) int { // fragment octets that fit in what is left of dg
		over := recordHeaderLen + handshakeHeaderLen
		if epoch > 0 {
			over += gcmExplicitNonce + gcmTagLen
		}
		return min(mtu-len(dg)-over, maxPlaintext-handshakeHeaderLen)
	}
	for i := range msgs {
		m := &msgs[i]
		if m.ccs {
			if mtu-len(dg) < recordHeaderLen+1 {
				flush()
			}
			dg = c.appendRecord(dg, contentChangeCipherSpec, 0, []byte{1})
			continue
		}
		off := 0
		for first := true; first || off < len(m.body); first = false {
			// A message is cut only when it does not fit in a datagram of
			// its own: what does not fit in the rest of this one starts the
			// next.
			n := room(m.epoch)
			if len(dg) > 0 && (n < len(m.body)-off || n < 64) {
				flush()
				n = room(m.epoch)
			}
			n = min(n, len(m.body)-off)
			pt := appendHandshakeHeader(make([]byte, 0, handshakeHeaderLen+n), m.typ, len(m.body), m.seq, off, n)
			pt = append(pt, m.body[off:off+n]...)
			seq := c.writeSeq[m.epoch]
			dg = c.appendRecord(dg, contentHandshake, m.epoch, pt)
			if m.epoch > 0 {
				clear(pt) // it may hold an EKTKey
			}
			sent = append(sent, sentRecord{epoch: m.epoch, seq: seq, msg: m.seq})
			off += n
		}
	}
	flush()
	return sent
}

// appendRecord appends one record of epoch to dst, sealing it for epoch
// 1, and advances that epoch's write sequence number.
func (c *Conn) appendRecord(dst []byte, typ uint8, epoch uint16, plaintext []byte) []byte {
	seq := c.writeSeq[epoch]
	c.writeSeq[epoch]++
	if epoch == 0 {
		dst = appendRecordHeader(dst, typ, versionDTLS12, 0, seq, len(plaintext))
		return append(dst, plaintext...)
	}
	return c.writeCipher.seal(dst, typ, epoch, seq, plaintext)
}
