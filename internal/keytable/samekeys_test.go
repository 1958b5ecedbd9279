package keytable

import (
	"context"
	"errors"
	"testing"
)

// TestRekeySameKeys: a re-key that brings the receive keys the
// association already has (built anew from the same octets, as a
// MediaKeys message delivered twice would give them) is refused with
// ErrSameKeys and changes nothing: same generation, same keys, same
// address. A re-key with new receive keys goes through.
func TestRekeySameKeys(t *testing.T) {
	ctx := context.Background()
	tb, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	first := keyPair{recv: newKeys(t, 1), send: newKeys(t, 2)}
	ep, err := tb.Install(ctx, assocOf(0, 7, first))
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]keyPair{
		"both":         {recv: newKeys(t, 1), send: newKeys(t, 2)},
		"receive keys": {recv: newKeys(t, 1), send: newKeys(t, 3)},
	} {
		a := assocOf(0, 7, p)
		a.Addr = addrOf(9) // an address change comes with it: not applied either
		if _, err := tb.Install(ctx, a); !errors.Is(err, ErrSameKeys) {
			t.Fatalf("re-key with the same %s: %v, want ErrSameKeys", name, err)
		}
		cur, ok := tb.Get(idOf(0))
		if !ok || cur != ep || cur.Gen() != ep.Gen() || cur.Recv() != first.recv || cur.Send() != first.send || cur.Addr() != addrOf(0) {
			t.Fatalf("re-key with the same %s changed the association: %+v", name, cur)
		}
	}
	nep, err := tb.Install(ctx, assocOf(0, 7, keyPair{recv: newKeys(t, 5), send: newKeys(t, 2)}))
	if err != nil || nep.Gen() == ep.Gen() {
		t.Fatalf("re-key with new keys: %v (generation %d, was %d)", err, nep.Gen(), ep.Gen())
	}
}
