package keydist

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/dtls"
)

func TestMemoryEKT(t *testing.T) {
	m, err := NewMemoryEKT(MemoryEKTConfig{Cipher: dtls.EKTCipherAESKW256, TTL: time.Minute, MaxConferences: 2})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := m.Current("a")
	a2, _ := m.Current("a")
	if !bytes.Equal(a.Key, a2.Key) || a.SPI != a2.SPI || len(a.Key) != 32 || len(a.Salt) != e2eSaltLen || a.TTL != time.Minute {
		t.Fatalf("Current is not stable: %v %v", &a, &a2)
	}
	b, _ := m.Current("b")
	if bytes.Equal(a.Key, b.Key) {
		t.Fatal("two conferences share a key")
	}
	if _, err := m.Current("c"); !errors.Is(err, ErrTooManyConferences) {
		t.Fatalf("third conference: %v", err)
	}
	// Rekey is a compare-and-swap on the SPI.
	n, _ := m.Rekey("a", a.SPI)
	if n.SPI != a.SPI+1 || bytes.Equal(n.Key, a.Key) || bytes.Equal(n.Salt, a.Salt) {
		t.Fatalf("re-key: spi %d -> %d", a.SPI, n.SPI)
	}
	same, _ := m.Rekey("a", a.SPI) // stale: someone re-keyed already
	if same.SPI != n.SPI || !bytes.Equal(same.Key, n.Key) {
		t.Fatal("a stale re-key replaced the current set")
	}
	if _, err := m.Rekey("nope", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("re-key of an unknown conference: %v", err)
	}
	// The caller's copies are its own; Forget zeroes the source's.
	m.mu.Lock()
	held := m.confs["a"]
	m.mu.Unlock()
	n.zero()
	if bytes.Equal(held.Key, make([]byte, 32)) {
		t.Fatal("zeroing a copy zeroed the source")
	}
	m.Forget("a")
	if !bytes.Equal(held.Key, make([]byte, 32)) || m.Conferences() != 1 {
		t.Fatal("Forget did not zero and drop the set")
	}
	if p := (&EKTParams{Key: []byte{1}, SPI: 4}); bytes.Contains([]byte(p.String()), []byte{1}) {
		t.Fatal("String prints the key")
	}
	if _, err := NewMemoryEKT(MemoryEKTConfig{Cipher: 9}); err == nil {
		t.Fatal("unknown cipher accepted")
	}
}

// TestEKTRenewedBeforeTTL: the janitor re-keys a conference whose set has
// used three quarters of its TTL.
func TestEKTRenewedBeforeTTL(t *testing.T) {
	e, _ := newEKTEnv(t, dtls.EKTCipherAESKW128, false)
	ep, err := joinDouble(t, e, "conf", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
	if err != nil {
		t.Fatal(err)
	}
	k := ep.waitKeys(t, 1, 5*time.Second)[0]
	e.kd.renewEKT(time.Now().Add(40*time.Minute), false) // TTL 1 h: not yet
	time.Sleep(100 * time.Millisecond)
	if n := len(ep.ektKeys()); n != 1 {
		t.Fatalf("re-keyed at two thirds of the TTL: %d keys", n)
	}
	e.kd.renewEKT(time.Now().Add(46*time.Minute), false)
	k2 := ep.waitKeys(t, 2, 5*time.Second)[1]
	if k2.SPI != k.SPI+1 || len(ep.ektKeys()) != 2 {
		t.Fatalf("spi %d -> %d, %d keys", k.SPI, k2.SPI, len(ep.ektKeys()))
	}
}
