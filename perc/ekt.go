package perc

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/dtls"
)

// maxEKTSets bounds the EKT parameter sets kept: the newest and those
// still in their grace period.
const maxEKTSets = 8

// innerSaltLen is the end-to-end master salt of the double profiles.
const innerSaltLen = 12

// ErrEKTKeyExpired: the conference's EKTKey outlived its ekt_ttl and no
// new one came (RFC 8870 section 5.2.2: it MUST NOT be used after).
var ErrEKTKeyExpired = errors.New("perc: the conference's EKTKey expired")

// ektSet is one EKT parameter set from the Key Distributor.
type ektSet struct {
	spi     uint16
	seq     uint64 // order of arrival: the highest is the newest
	key     []byte
	salt    []byte    // truncated to the inner layer's 12 octets
	ttl     time.Time // receipt + ekt_ttl: never used after
	expires time.Time // end of the grace period once superseded; zero while newest
}

func (e *ektSet) zero() {
	clear(e.key)
	clear(e.salt)
}

// usable reports whether the set may still be used at now.
func (e *ektSet) usable(now time.Time) bool {
	return now.Before(e.ttl) && (e.expires.IsZero() || now.Before(e.expires))
}

// sendKeys is this endpoint's end-to-end key for one EKT parameter set:
// the master key it picked, announced in FullEKTFields under spi. It holds
// its own copy of the set's EKTKey, so that nothing the sets go through
// (expiry, zeroing) can change what a FullEKTField is sealed with.
type sendKeys struct {
	spi    uint16
	kek    []byte
	ttl    time.Time
	master []byte
	inner  *double.Session
	gen    uint64
}

func (k *sendKeys) zero() {
	clear(k.master)
	clear(k.kek)
}

// addEKTKey takes an EKTKey from the Key Distributor (Runner goroutine).
// The newest EKTKey always wins: the first one starts sending; a later one
// (a re-key) makes a new end-to-end key that replaces the current one
// RekeyDelay after the first re-key not yet switched to, and puts the
// superseded parameter sets on their grace period.
func (s *Session) addEKTKey(k *dtls.EKTKey) {
	if len(k.MasterSalt) < innerSaltLen {
		s.fail(fmt.Errorf("perc: EKTKey with a %d-octet master salt", len(k.MasterSalt)))
		return
	}
	now := time.Now()
	// The writers' lock first (the order WriteRTP takes them in): a send
	// key replaced here may be zeroed, no writer is using it.
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.keyLen == 0 {
		return
	}
	if s.sets[k.SPI] != nil {
		// The same SPI again names the same parameter set (RFC 8870
		// section 4.2): nothing changes.
		return
	}
	s.promote(now)
	s.expireSets(now)
	for len(s.sets) >= maxEKTSets && s.evictOldest() {
	}
	s.setSeq++
	set := &ektSet{spi: k.SPI, seq: s.setSeq, key: slices.Clone(k.Key), salt: slices.Clone(k.MasterSalt[:innerSaltLen]),
		ttl: now.Add(time.Duration(k.TTL) * time.Second)}
	sk, err := s.newSendKeys(set)
	if err != nil {
		set.zero()
		s.failLocked(err)
		return
	}
	for _, o := range s.sets {
		if o.expires.IsZero() {
			o.expires = now.Add(s.cfg.RekeyDelay + s.cfg.KeyGrace)
		}
	}
	s.sets[k.SPI] = set
	switch {
	case s.send == nil:
		s.send = sk
		s.readyMu.Do(func() { close(s.ready) })
	case s.pending != nil:
		// A re-key on a re-key: the newer key replaces the pending one,
		// and the switch stays when the first was due.
		s.pending.zero()
		s.pending = sk
	default:
		s.pending, s.switch_ = sk, now.Add(s.cfg.RekeyDelay)
	}
}

// promote switches to the pending send keys when their time has come, and
// zeroes the old ones. Called with s.w.mu and s.mu held.
func (s *Session) promote(now time.Time) {
	if s.pending == nil || now.Before(s.switch_) {
		return
	}
	if s.send != nil {
		s.send.zero()
	}
	s.send, s.pending = s.pending, nil
	s.c.reks.Add(1)
}

func (s *Session) failLocked(err error) {
	s.failed.CompareAndSwap(nil, &err)
	s.readyMu.Do(func() { close(s.ready) })
}

// newSendKeys picks a fresh end-to-end master key for set (RFC 8870
// section 4.5: a new EKTKey means a new SRTP master key).
func (s *Session) newSendKeys(set *ektSet) (*sendKeys, error) {
	master := make([]byte, s.keyLen)
	if _, err := rand.Read(master); err != nil {
		return nil, fmt.Errorf("perc: end-to-end key: %w", err)
	}
	inner, err := double.NewSession(master, set.salt)
	if err != nil {
		clear(master)
		return nil, fmt.Errorf("perc: end-to-end key: %w", err)
	}
	s.gen++
	return &sendKeys{spi: set.spi, kek: slices.Clone(set.key), ttl: set.ttl, master: master, inner: inner, gen: s.gen}, nil
}

// expireSets drops the parameter sets whose grace period or TTL is over.
// Called with s.mu held.
func (s *Session) expireSets(now time.Time) {
	for spi, set := range s.sets {
		if !set.usable(now) {
			set.zero()
			delete(s.sets, spi)
		}
	}
}

// evictOldest drops the oldest superseded set to make room for a new
// one; false when every set held is the newest (none to evict).
func (s *Session) evictOldest() bool {
	var old *ektSet
	for _, set := range s.sets {
		if !set.expires.IsZero() && (old == nil || set.seq < old.seq) {
			old = set
		}
	}
	if old == nil {
		return false
	}
	old.zero()
	delete(s.sets, old.spi)
	return true
}

// sendKeysNow returns the keys to seal with now, switching to the pending
// ones when their time has come. Called with s.w.mu held.
func (s *Session) sendKeysNow(now time.Time) (*sendKeys, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.promote(now)
	switch {
	case s.send == nil:
		return nil, ErrNoEKTKey
	case !now.Before(s.send.ttl):
		return nil, ErrEKTKeyExpired
	}
	return s.send, nil
}

// setInfo is what a receiver needs of a parameter set, copied out under
// the lock.
type setInfo struct {
	seq       uint64
	key, salt []byte
}

// ektSetFor returns a copy of the parameter set named spi, if held and
// usable at now.
func (s *Session) ektSetFor(spi uint16, now time.Time) (setInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sets[spi]
	if set == nil || !set.usable(now) {
		return setInfo{}, false
	}
	return setInfo{seq: set.seq, key: slices.Clone(set.key), salt: slices.Clone(set.salt)}, true
}

// setUsable reports whether the parameter set named spi is held and usable
// at now: a sender's key is used no longer than the set it came under.
func (s *Session) setUsable(spi uint16, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sets[spi]
	return set != nil && set.usable(now)
}

// EKTSPI returns the SPI of the newest EKT parameter set the Key
// Distributor gave this endpoint (RFC 8870: it names the conference's
// EKTKey in every FullEKTField), and false before the first EKTKey. Every
// member of a conference holds the same one once a re-key has reached
// them all, whichever KD replica keyed each (README: KD replicas).
func (s *Session) EKTSPI() (uint16, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var newest *ektSet
	for _, set := range s.sets {
		if newest == nil || set.seq > newest.seq {
			newest = set
		}
	}
	if newest == nil {
		return 0, false
	}
	return newest.spi, true
}
