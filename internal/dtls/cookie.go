package dtls

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// CookieJar makes and checks the stateless HelloVerifyRequest cookies of
// RFC 6347 section 4.2.1: Cookie = HMAC(Secret, binding, client
// parameters), where binding names the client's transport (its address, or
// the tunnel association it arrives on) and the parameters are those the
// second ClientHello must repeat. The secret changes every rotation
// interval; a cookie made with the previous secret is still accepted. One
// jar serves every server Conn of a process; it is safe for concurrent use.
type CookieJar struct {
	rotate time.Duration
	mu     sync.Mutex
	cur    [32]byte
	prev   [32]byte
	since  time.Time
}

// cookieLen is the length of our cookies (RFC 6347 allows up to 255).
const cookieLen = 32

// DefaultCookieRotation is how often a jar's secret changes.
const DefaultCookieRotation = 5 * time.Minute

// NewCookieJar returns a jar with a fresh random secret that changes every
// rotate (DefaultCookieRotation when 0).
func NewCookieJar(rotate time.Duration) (*CookieJar, error) {
	if rotate <= 0 {
		rotate = DefaultCookieRotation
	}
	j := &CookieJar{rotate: rotate}
	if _, err := rand.Read(j.cur[:]); err != nil {
		return nil, fmt.Errorf("dtls: cookie secret: %w", err)
	}
	if _, err := rand.Read(j.prev[:]); err != nil {
		return nil, fmt.Errorf("dtls: cookie secret: %w", err)
	}
	j.since = time.Now()
	return j, nil
}

// secrets returns the current and previous secrets, rotating first when due.
func (j *CookieJar) secrets(now time.Time) (cur, prev [32]byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if now.Sub(j.since) >= j.rotate {
		j.prev = j.cur
		if _, err := rand.Read(j.cur[:]); err != nil {
			// crypto/rand does not fail on Linux; keep the old secret
			// rather than a predictable one.
			j.cur = j.prev
		}
		j.since = now
	}
	return j.cur, j.prev
}

// mac computes the cookie for one secret.
func cookieMAC(secret []byte, binding []byte, ch *dtlsmsg.ClientHello) []byte {
	m := hmac.New(sha256.New, secret)
	var l [2]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint16(l[:], uint16(len(b)))
		m.Write(l[:])
		m.Write(b)
	}
	put(binding)
	binary.BigEndian.PutUint16(l[:], ch.Version)
	m.Write(l[:])
	m.Write(ch.Random[:])
	put(ch.SessionID)
	for _, s := range ch.CipherSuites {
		binary.BigEndian.PutUint16(l[:], s)
		m.Write(l[:])
	}
	m.Write([]byte{0xFF})
	put(ch.CompressionMethods)
	return m.Sum(nil)[:cookieLen]
}

// make returns the cookie for a ClientHello received on binding.
func (j *CookieJar) make(now time.Time, binding []byte, ch *dtlsmsg.ClientHello) []byte {
	cur, _ := j.secrets(now)
	return cookieMAC(cur[:], binding, ch)
}

// valid reports whether the ClientHello carries a cookie this jar made for
// binding and these parameters, in constant time.
func (j *CookieJar) valid(now time.Time, binding []byte, ch *dtlsmsg.ClientHello) bool {
	if len(ch.Cookie) != cookieLen {
		return false
	}
	cur, prev := j.secrets(now)
	a := hmac.Equal(ch.Cookie, cookieMAC(cur[:], binding, ch))
	b := hmac.Equal(ch.Cookie, cookieMAC(prev[:], binding, ch))
	return a || b
}
