package control

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdfast/mdfast/internal/keytable"
)

// TestMembershipPlacement: the tls-id mapping wins over the ip:port
// mapping, which wins over the ip mapping; an endpoint none places is in
// no conference, unless single-conference mode names one.
func TestMembershipPlacement(t *testing.T) {
	const tlsID = "tls-id-of-twenty-octets"
	ep := netip.MustParseAddrPort("198.18.0.11:4000")
	for _, tc := range []struct {
		name   string
		single string
		maps   func(*Membership) error
		tlsID  string
		addr   netip.AddrPort
		want   string // "" : in no conference
	}{
		{"nothing mapped", "", func(*Membership) error { return nil }, tlsID, ep, ""},
		{"nothing mapped, single-conference mode", "lobby", func(*Membership) error { return nil }, tlsID, ep, "lobby"},
		{"tls-id", "", func(m *Membership) error { return m.MapTLSID(tlsID, "room1") }, tlsID, ep, "room1"},
		{"tls-id wins over single", "lobby", func(m *Membership) error { return m.MapTLSID(tlsID, "room1") }, tlsID, ep, "room1"},
		{"other tls-id", "", func(m *Membership) error { return m.MapTLSID("another-tls-id-of-20-octets", "room1") }, tlsID, ep, ""},
		{"empty tls-id never matches", "", func(m *Membership) error { return m.MapTLSID(tlsID, "room1") }, "", ep, ""},
		{"ip:port", "", func(m *Membership) error { return m.MapAddr("198.18.0.11:4000", "room2") }, tlsID, ep, "room2"},
		{"ip:port, other port", "", func(m *Membership) error { return m.MapAddr("198.18.0.11:4001", "room2") }, tlsID, ep, ""},
		{"ip", "", func(m *Membership) error { return m.MapAddr("198.18.0.11", "room3") }, tlsID, ep, "room3"},
		{"v4-mapped source", "", func(m *Membership) error { return m.MapAddr("198.18.0.11:4000", "room2") }, tlsID,
			netip.MustParseAddrPort("[::ffff:198.18.0.11]:4000"), "room2"},
		{"tls-id over ip:port over ip", "", func(m *Membership) error {
			return errors.Join(m.MapAddr("198.18.0.11", "room3"), m.MapAddr("198.18.0.11:4000", "room2"), m.MapTLSID(tlsID, "room1"))
		}, tlsID, ep, "room1"},
		{"ip:port over ip", "", func(m *Membership) error {
			return errors.Join(m.MapAddr("198.18.0.11", "room3"), m.MapAddr("198.18.0.11:4000", "room2"))
		}, tlsID, ep, "room2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMembership(tc.single)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.maps(m); err != nil {
				t.Fatal(err)
			}
			id, ok := m.Conference(tc.tlsID, tc.addr)
			if got := m.ConferenceName(id); ok != (tc.want != "") || (ok && got != tc.want) {
				t.Fatalf("Conference = %d %q (ok %v), want %q", id, got, ok, tc.want)
			}
			if m.Single() != tc.single {
				t.Fatalf("Single = %q", m.Single())
			}
		})
	}
}

// TestMembershipRemovedMapping: removing the only mapping of an endpoint
// puts it in no conference again; Replace (a reload) keeps single-conference
// mode and the conference IDs of names it keeps.
func TestMembershipRemovedMapping(t *testing.T) {
	ep := netip.MustParseAddrPort("198.18.0.11:4000")
	m, err := NewMembership("")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.MapAddr("198.18.0.11", "room1"); err != nil {
		t.Fatal(err)
	}
	id, ok := m.Conference("", ep)
	if !ok {
		t.Fatal("mapped endpoint not placed")
	}
	if ok, err := m.UnmapAddr("198.18.0.11"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, ok := m.Conference("", ep); ok {
		t.Fatal("placed after its mapping was removed")
	}
	if err := m.Replace(Mappings{Addrs: map[string]string{"198.18.0.11:4000": "room1"}}); err != nil {
		t.Fatal(err)
	}
	if again, ok := m.Conference("", ep); !ok || again != id {
		t.Fatalf("after Replace: %d %v, want %d", again, ok, id)
	}

	s, err := NewMembership("lobby")
	if err != nil {
		t.Fatal(err)
	}
	lobby, _ := s.Conference("", ep)
	if err := s.Replace(Mappings{}); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Conference("", ep); !ok || got != lobby || s.ConferenceName(got) != "lobby" {
		t.Fatalf("single-conference mode after Replace: %d %v", got, ok)
	}
	if lobby == keytable.ConferenceID(0) {
		t.Fatal("conference ID 0")
	}
}

// TestNewMembershipBadSingle: a single-conference name longer than a
// conference name may be is refused.
func TestNewMembershipBadSingle(t *testing.T) {
	if _, err := NewMembership(strings.Repeat("x", maxNameLen+1)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NewMembership(long) = %v, want ErrInvalid", err)
	}
	if _, err := NewMembership(strings.Repeat("x", maxNameLen)); err != nil {
		t.Fatal(err)
	}
}
