package mdslow

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"sync"
	"time"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// The MD answers the stateless cookie exchange of RFC 6347 section 4.2.1
// itself, before any per-association state exists on either daemon: a
// ClientHello without a valid cookie gets a HelloVerifyRequest straight
// back to its source address and is forgotten; only a ClientHello that
// returns a cookie made for its 5-tuple (the sender proved it receives
// there) starts an association and reaches the KD. A flood from spoofed
// sources therefore costs one HMAC per datagram and no memory, on the MD
// and on the KD. The exchange carries no secret of the association: the
// first ClientHello and the HelloVerifyRequest are not part of the
// handshake transcript (RFC 6347 section 4.2.1), so the KD's handshake is
// the same as if it had sent the HelloVerifyRequest itself.
//
// The cookie is read from the ClientHello's first fragment alone (RFC 6347
// puts client_version, random, session_id and cookie at the front of the
// body), so a ClientHello split over several datagrams is admitted on its
// first fragment and an attacker sending first fragments only keeps
// nothing alive.

// cookieLen is the length of the MD's cookies (RFC 6347 allows up to 255).
const cookieLen = 32

// cookieRotation is how often the cookie secret changes; a cookie made with
// the previous secret is still accepted, so a cookie lives 1 to 2 rotations.
const cookieRotation = time.Minute

// helloHead is what the MD reads of a ClientHello: the record and message
// numbers a HelloVerifyRequest must echo, and the fields the cookie binds.
// Random, SessionID and Cookie alias the datagram.
type helloHead struct {
	recSeq    uint64
	msgSeq    uint16
	version   uint16
	random    []byte
	sessionID []byte
	cookie    []byte
}

var (
	// errNotHello: the datagram does not start with an epoch-0 handshake
	// record holding the first fragment (offset 0) of a ClientHello.
	errNotHello = errors.New("mdslow: not the start of a ClientHello")
	// errShortHello: it does, but the fragment ends before the cookie.
	errShortHello = errors.New("mdslow: ClientHello fragment too short to hold its cookie")
)

// parseHelloHead reads the first record of a datagram from an endpoint. It
// returns errNotHello when that record is not the start of a ClientHello
// (every other datagram of an association) and errShortHello when it is
// but ends before the cookie. It never allocates and checks every length.
func parseHelloHead(b []byte) (helloHead, error) {
	rec, _, err := dtlsmsg.NextRecord(b)
	if err != nil || rec.ContentType != dtlsmsg.ContentTypeHandshake || rec.Epoch != 0 {
		return helloHead{}, errNotHello
	}
	hs, frag, _, err := dtlsmsg.NextHandshake(rec.Fragment)
	if err != nil || hs.Type != dtlsmsg.HandshakeTypeClientHello || hs.FragmentOffset != 0 {
		return helloHead{}, errNotHello
	}
	h := helloHead{recSeq: rec.Sequence, msgSeq: hs.MessageSeq}
	// client_version(2) random(32) session_id<0..32> cookie<0..2^8-1>
	if len(frag) < 2+32+1 {
		return helloHead{}, errShortHello
	}
	h.version = binary.BigEndian.Uint16(frag[0:2])
	h.random = frag[2:34:34]
	n := int(frag[34])
	if n > 32 {
		return helloHead{}, errNotHello // RFC 5246: session_id<0..32>
	}
	rest := frag[35:]
	if len(rest) < n+1 {
		return helloHead{}, errShortHello
	}
	h.sessionID = rest[:n:n]
	rest = rest[n:]
	c := int(rest[0])
	if len(rest)-1 < c {
		return helloHead{}, errShortHello
	}
	h.cookie = rest[1 : 1+c : 1+c]
	return h, nil
}

// cookieJar makes and checks the MD's cookies. It is safe for concurrent
// use: the Run goroutine makes and checks cookies, the data plane's
// goroutines check them (Relay.Triage).
type cookieJar struct {
	mu              sync.Mutex
	rotate          time.Duration
	cur, prev       [32]byte
	curMAC, prevMAC hash.Hash // HMAC-SHA256 keyed with cur, prev
	since           time.Time
	mac             [sha256.Size]byte // scratch
	in              [16 + 2 + 2 + 2 + 1]byte
}

func newCookieJar(now time.Time) (*cookieJar, error) {
	j := &cookieJar{rotate: cookieRotation, since: now}
	if _, err := rand.Read(j.cur[:]); err != nil {
		return nil, fmt.Errorf("mdslow: cookie secret: %w", err)
	}
	if _, err := rand.Read(j.prev[:]); err != nil {
		return nil, fmt.Errorf("mdslow: cookie secret: %w", err)
	}
	j.curMAC, j.prevMAC = hmac.New(sha256.New, j.cur[:]), hmac.New(sha256.New, j.prev[:])
	return j, nil
}

func (j *cookieJar) maybeRotate(now time.Time) {
	if now.Sub(j.since) < j.rotate {
		return
	}
	if now.Sub(j.since) >= 2*j.rotate {
		// Idle for two periods or more: a cookie made with the current
		// secret is already too old to accept, so both secrets go.
		if _, err := rand.Read(j.cur[:]); err == nil {
			j.curMAC = hmac.New(sha256.New, j.cur[:])
		}
	}
	j.prev, j.prevMAC = j.cur, j.curMAC
	if _, err := rand.Read(j.cur[:]); err != nil {
		j.cur = j.prev // crypto/rand does not fail on Linux; never a predictable secret
	}
	j.curMAC = hmac.New(sha256.New, j.cur[:])
	j.since = now
}

// compute writes HMAC-SHA256(m's secret, endpoint address, endpoint port, MD
// port, client_version, random, session_id) into j.mac.
func (j *cookieJar) compute(m hash.Hash, from netip.AddrPort, port uint16, h *helloHead) []byte {
	m.Reset()
	b := &j.in // not a local: m.Write would move it to the heap
	a := from.Addr().Unmap().As16()
	copy(b[:16], a[:])
	binary.BigEndian.PutUint16(b[16:], from.Port())
	binary.BigEndian.PutUint16(b[18:], port)
	binary.BigEndian.PutUint16(b[20:], h.version)
	b[22] = byte(len(h.sessionID))
	m.Write(b[:])
	m.Write(h.random)
	m.Write(h.sessionID)
	return m.Sum(j.mac[:0])
}

// make appends the cookie for a ClientHello from from to the MD's port.
// The result is copied to dst.
func (j *cookieJar) make(dst []byte, now time.Time, from netip.AddrPort, port uint16, h *helloHead) []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.maybeRotate(now)
	return append(dst, j.compute(j.curMAC, from, port, h)[:cookieLen]...)
}

// valid reports, in constant time, whether the ClientHello carries a cookie
// made for it by this jar with the current or the previous secret.
func (j *cookieJar) valid(now time.Time, from netip.AddrPort, port uint16, h *helloHead) bool {
	if len(h.cookie) != cookieLen {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.maybeRotate(now)
	ok := hmac.Equal(h.cookie, j.compute(j.curMAC, from, port, h)[:cookieLen])
	return hmac.Equal(h.cookie, j.compute(j.prevMAC, from, port, h)[:cookieLen]) || ok
}

// appendHelloVerifyRequest appends the datagram answering h with cookie: a
// plaintext handshake record with the ClientHello's record sequence number
// and message_seq (RFC 6347 section 4.2.1, so that a stateless server
// never reuses a sequence number), record and server_version DTLS 1.0.
func appendHelloVerifyRequest(dst []byte, h *helloHead, cookie []byte) []byte {
	body := 2 + 1 + len(cookie)
	msg := dtlsmsg.HandshakeHeaderLen + body
	dst = append(dst, dtlsmsg.ContentTypeHandshake, 0xFE, 0xFF, 0, 0,
		byte(h.recSeq>>40), byte(h.recSeq>>32), byte(h.recSeq>>24), byte(h.recSeq>>16), byte(h.recSeq>>8), byte(h.recSeq),
		byte(msg>>8), byte(msg))
	dst = append(dst, dtlsmsg.HandshakeTypeHelloVerifyRequest, 0, byte(body>>8), byte(body),
		byte(h.msgSeq>>8), byte(h.msgSeq), 0, 0, 0, 0, byte(body>>8), byte(body))
	dst = append(dst, 0xFE, 0xFF, byte(len(cookie)))
	return append(dst, cookie...)
}
