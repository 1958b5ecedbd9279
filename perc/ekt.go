package perc

import (
	"crypto/rand"
	"fmt"
	"slices"
	"time"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/double"
)

// maxEKTSets bounds the EKT parameter sets kept: the current one and those
// still in their grace period.
const maxEKTSets = 8

// innerSaltLen is the end-to-end master salt of the double profiles.
const innerSaltLen = 12

// sendKeys is this endpoint's end-to-end key for one EKT parameter set:
// the master key it picked, announced in FullEKTFields under set.
type sendKeys struct {
	set    *ektSet
	master []byte
	inner  *double.Session
	gen    uint64
}

func (k *sendKeys) zero() { clear(k.master) }

// addEKTKey takes an EKTKey from the Key Distributor (Runner goroutine):
// the first one starts sending; a later one (a re-key) makes a new
// end-to-end key that replaces the current one after RekeyDelay, and puts
// the superseded parameter set on its grace period.
func (s *Session) addEKTKey(k *dtls.EKTKey) {
	if len(k.MasterSalt) < innerSaltLen {
		s.fail(fmt.Errorf("perc: EKTKey with a %d-octet master salt", len(k.MasterSalt)))
		return
	}
	now := time.Now()
	set := &ektSet{spi: k.SPI, key: slices.Clone(k.Key), salt: slices.Clone(k.MasterSalt[:innerSaltLen])}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.keyLen == 0 {
		set.zero()
		return
	}
	if old := s.sets[k.SPI]; old != nil {
		// The same SPI again names the same parameter set (RFC 8870
		// section 4.2): nothing changes.
		set.zero()
		return
	}
	s.expireSets(now)
	if len(s.sets) >= maxEKTSets {
		set.zero()
		return
	}
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
	if s.send == nil {
		s.send = sk
		s.readyMu.Do(func() { close(s.ready) })
		return
	}
	if s.pending != nil {
		s.pending.zero()
	}
	s.pending, s.switch_ = sk, now.Add(s.cfg.RekeyDelay)
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
	return &sendKeys{set: set, master: master, inner: inner, gen: s.gen}, nil
}

// expireSets drops the parameter sets whose grace period is over. Called
// with s.mu held.
func (s *Session) expireSets(now time.Time) {
	for spi, set := range s.sets {
		if !set.expires.IsZero() && now.After(set.expires) {
			set.zero()
			delete(s.sets, spi)
		}
	}
}

// sendKeysNow returns the keys to seal with now, switching to the pending
// ones when their time has come.
func (s *Session) sendKeysNow(now time.Time) *sendKeys {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != nil && !now.Before(s.switch_) {
		old := s.send
		s.send, s.pending = s.pending, nil
		s.c.reks.Add(1)
		// The old key may still seal packets already being built;
		// receivers keep it for KeyGrace. It is dropped, not zeroed.
		_ = old
	}
	return s.send
}

// ektSetFor returns the parameter set named spi, if held and not expired.
func (s *Session) ektSetFor(spi uint16, now time.Time) *ektSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sets[spi]
	if set == nil || !set.expires.IsZero() && now.After(set.expires) {
		return nil
	}
	return set
}
