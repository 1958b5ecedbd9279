package keydist

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mdfast/mdfast/internal/dtls"
)

// EKT per conference (RFC 8870, RFC 8871 section 4.5.2): every member of a
// conference that negotiated a double profile gets the conference's EKT
// parameter set in an EKTKey message right after its handshake. The
// EKTKey encrypts the end-to-end SRTP master key each member picks itself
// and sends to the others in EKT tags; the master salt is the conference's
// end-to-end salt. When a member leaves (and, if configured, when one
// joins) the KD makes a new parameter set (new SPI, key and salt) and sends
// it to every remaining member, who then change their own end-to-end keys:
// whoever left cannot read what is sent after the change.

// Defaults of the EKT parameter sets.
const (
	DefaultEKTCipher = dtls.EKTCipherAESKW128 // mandatory to implement (RFC 8870 section 4.4.1)
	DefaultEKTTTL    = 24 * time.Hour
	// e2eSaltLen is the end-to-end master salt of the double profiles:
	// the inner half of their 24-octet salt (RFC 8723 section 5.2).
	e2eSaltLen = 12
	// DefaultMaxEKTConferences bounds the conferences with a live
	// parameter set.
	DefaultMaxEKTConferences = 10000
)

// EKTParams is one EKT parameter set of a conference: the EKTKey for the
// EKT cipher, the SPI naming it in EKT tags, the conference's end-to-end
// master salt, and how long the key may be used.
type EKTParams struct {
	Cipher  dtls.EKTCipher
	Key     []byte
	Salt    []byte
	SPI     uint16
	TTL     time.Duration
	Created time.Time

	// rev orders the sets of a conference: the store's mod revision of
	// the set (EtcdEKT), 0 for sources with one process (MemoryEKT).
	rev int64
}

// EKTKey is the DTLS EKTKey message for the parameter set (its slices are
// copies the caller may zero). Its ekt_ttl is what is left of the set's
// lifetime, at least a second.
func (p *EKTParams) EKTKey() dtls.EKTKey {
	left := time.Until(p.Created.Add(p.TTL))
	return dtls.EKTKey{Key: slices.Clone(p.Key), MasterSalt: slices.Clone(p.Salt), SPI: p.SPI,
		TTL: uint32(min(max(left/time.Second, 1), 1<<24-1))}
}

func (p *EKTParams) zero() {
	clear(p.Key)
	clear(p.Salt)
}

// String never prints key material.
func (p *EKTParams) String() string {
	return fmt.Sprintf("EKTParams{%v spi %d ttl %v}", p.Cipher, p.SPI, p.TTL)
}

// EKTSource keeps the EKT parameter set of each conference. Two KD
// replicas sharing one source must hand the same set to the members of a
// conference: Current creates a set only if none exists, Rekey replaces
// the set named by spi only if it is still the current one.
type EKTSource interface {
	// Cipher is the EKT cipher of every conference.
	Cipher() dtls.EKTCipher
	// Current returns the conference's parameter set, making it when
	// absent. The result's slices are the caller's.
	Current(conference string) (EKTParams, error)
	// Rekey replaces the conference's parameter set if spi is still
	// current, and returns the current set (new, or already replaced by
	// someone else).
	Rekey(conference string, spi uint16) (EKTParams, error)
	// Forget zeroes and drops the conference's parameter set (its last
	// member left).
	Forget(conference string)
}

// ErrTooManyConferences: the EKT source's bound on conferences is reached.
var ErrTooManyConferences = errors.New("keydist: too many conferences with EKT state")

// MemoryEKT is the KD's own EKTSource: parameter sets in this process's
// memory, bounded in number, zeroed when dropped.
type MemoryEKT struct {
	cipher dtls.EKTCipher
	ttl    time.Duration
	max    int

	mu    sync.Mutex
	confs map[string]*EKTParams
}

// MemoryEKTConfig configures a MemoryEKT; zero values mean the defaults.
type MemoryEKTConfig struct {
	Cipher         dtls.EKTCipher
	TTL            time.Duration
	MaxConferences int
}

// NewMemoryEKT returns an in-memory EKT source.
func NewMemoryEKT(c MemoryEKTConfig) (*MemoryEKT, error) {
	if c.Cipher == 0 {
		c.Cipher = DefaultEKTCipher
	}
	if c.Cipher.KeyLen() == 0 {
		return nil, fmt.Errorf("keydist: EKT cipher %d not implemented", c.Cipher)
	}
	if c.TTL <= 0 {
		c.TTL = DefaultEKTTTL
	}
	if c.TTL > (1<<24-1)*time.Second {
		return nil, fmt.Errorf("keydist: EKT TTL %v above 2^24-1 seconds", c.TTL)
	}
	if c.MaxConferences <= 0 {
		c.MaxConferences = DefaultMaxEKTConferences
	}
	return &MemoryEKT{cipher: c.Cipher, ttl: c.TTL, max: c.MaxConferences, confs: map[string]*EKTParams{}}, nil
}

// Cipher implements EKTSource.
func (m *MemoryEKT) Cipher() dtls.EKTCipher { return m.cipher }

// newParams makes a fresh parameter set; the SPI follows prev's (a
// random start when prev is nil), so that no SPI of a conference repeats
// before 65536 re-keyings.
func (m *MemoryEKT) newParams(prev *EKTParams) (*EKTParams, error) {
	p := &EKTParams{Cipher: m.cipher, Key: make([]byte, m.cipher.KeyLen()), Salt: make([]byte, e2eSaltLen),
		TTL: m.ttl, Created: time.Now()}
	var spi [2]byte
	for _, b := range [][]byte{p.Key, p.Salt, spi[:]} {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("keydist: EKT parameter set: %w", err)
		}
	}
	p.SPI = binary.BigEndian.Uint16(spi[:])
	if prev != nil {
		p.SPI = prev.SPI + 1
	}
	return p, nil
}

func (p *EKTParams) clone() EKTParams {
	c := *p
	c.Key, c.Salt = slices.Clone(p.Key), slices.Clone(p.Salt)
	return c
}

// Current implements EKTSource.
func (m *MemoryEKT) Current(conference string) (EKTParams, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.confs[conference]; p != nil {
		return p.clone(), nil
	}
	if len(m.confs) >= m.max {
		return EKTParams{}, ErrTooManyConferences
	}
	p, err := m.newParams(nil)
	if err != nil {
		return EKTParams{}, err
	}
	m.confs[conference] = p
	return p.clone(), nil
}

// Rekey implements EKTSource.
func (m *MemoryEKT) Rekey(conference string, spi uint16) (EKTParams, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.confs[conference]
	if old == nil {
		return EKTParams{}, fmt.Errorf("keydist: re-key conference %q: %w", conference, ErrNotFound)
	}
	if old.SPI != spi {
		return old.clone(), nil
	}
	p, err := m.newParams(old)
	if err != nil {
		return EKTParams{}, err
	}
	old.zero()
	m.confs[conference] = p
	return p.clone(), nil
}

// Forget implements EKTSource.
func (m *MemoryEKT) Forget(conference string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.confs[conference]; p != nil {
		p.zero()
		delete(m.confs, conference)
	}
}

// Conferences returns how many conferences have a parameter set.
func (m *MemoryEKT) Conferences() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.confs)
}
