package mdslow

import (
	"testing"
	"time"
)

// TestDuplicateMediaKeys: the MediaKeys of an installed association
// delivered again (the same key material) are ignored and counted: the
// association stays, with the keys, generation and replay state it has
// (installing them afresh would let its media already forwarded through
// again). New keys for it afterwards are a re-key as before.
func TestDuplicateMediaKeys(t *testing.T) {
	e := newEnv(t, Limits{IdleTimeout: 5 * time.Second})
	ep := "198.18.0.11:4000"
	e.join(t, ep, "tls-id-mapped-to-conference-7", 1)
	l, _ := e.r.Associations(t.Context())
	if len(l) != 1 {
		t.Fatalf("associations %+v", l)
	}
	id := l[0].ID
	e.r.HandleMediaKeys(keys(id))
	e.sync(t)
	first, ok := e.table.Get(id)
	if !ok {
		t.Fatal("not installed")
	}
	for range 3 {
		e.r.HandleMediaKeys(keys(id)) // built anew from the same octets
		e.sync(t)
	}
	got, ok := e.table.Get(id)
	if !ok || got != first || got.Gen() != first.Gen() {
		t.Fatalf("duplicate MediaKeys changed the association: %v %v (generation %d, was %d)", got, ok, got.Gen(), first.Gen())
	}
	if s := e.r.Stats(); s.DuplicateKeys != 3 || s.InstallErrors != 0 || s.Associations != 1 || s.Ended != 0 {
		t.Fatalf("stats %+v: want 3 duplicate keys, the association kept", s)
	}
	mk := keys(id)
	mk.ClientWriteMasterKey[0], mk.ServerWriteMasterKey[0] = 1, 2
	e.r.HandleMediaKeys(mk)
	e.sync(t)
	if got, ok := e.table.Get(id); !ok || got.Gen() == first.Gen() {
		t.Fatalf("a re-key with new keys after the duplicates was not installed: %v %v", got, ok)
	}
}
