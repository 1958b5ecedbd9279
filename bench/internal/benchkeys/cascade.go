package benchkeys

// A cascade key file (issue 14): the conference's members are split over
// several Media Distributors, joined by a full mesh of links. The file
// says which MD each endpoint is attached to (Endpoint.MD, an index into
// Cascade.MDs) and holds the links' shared secret; each MD (a
// bench/mdharness -md i) installs its own members and one link association
// per peer MD, with the conference's per-direction link keys.
//
// The link keys are internal/cascade's (DeriveKeys: HKDF-SHA256 over a
// DTLS-SRTP association's exported keying material, info "mdfast cascade
// v1" | direction octet | conference name; the MD with the smaller md-id is
// the DTLS client) and the tag is cascade.Tag of the conference's name.
// The bench has no DTLS between its harnesses: the keying material of the
// pair (i, j) is derived from Cascade.Secret instead (pairEKM), the only
// part that is the bench's own.

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/mdfast/mdfast/internal/cascade"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// Cascade is the split of a key file's conference over several MDs.
type Cascade struct {
	// Name is the conference's name: its link tag is cascade.Tag(Name)
	// and it enters every link key's derivation.
	Name string `json:"name"`
	// MDs are the MDs' media addresses. MD i's md-id is MDID(i), so of
	// two MDs the one with the smaller index is the DTLS client of
	// their link.
	MDs []netip.AddrPort `json:"mds"`
	// Secret (SecretLen octets) stands in for the DTLS exporters of
	// every link: pair (i, j)'s keying material is derived from it.
	Secret []byte `json:"secret"`
}

// SecretLen is the length of Cascade.Secret; ExportLen the keying
// material of one link (what internal/cascade exports from a DTLS
// association).
const (
	SecretLen = 32
	ExportLen = cascade.ExportLen
)

const pairLabel = "mdfast bench link v1"

// MDID is MD i's md-id in a cascade file: "md00", "md01", ... (so the
// lexicographic order of the ids is the order of the indices).
func MDID(i int) string { return fmt.Sprintf("md%02d", i) }

// GenerateCascade makes a key file like GenerateProfile whose n
// endpoints are split over the MDs at mds: endpoint i is attached to MD
// at[i] (len(at) == n), and the links get a fresh secret. The
// conference's name is "bench-<Conference>". File.MD is mds[0].
func GenerateCascade(profile string, n int, addr netip.Addr, basePort uint16, mds []netip.AddrPort, at []int) (*File, error) {
	if len(mds) < 2 || len(at) != n {
		return nil, fmt.Errorf("benchkeys: cascade of %d MDs for %d of %d endpoints", len(mds), len(at), n)
	}
	f, err := GenerateProfile(profile, n, addr, basePort, mds[0])
	if err != nil {
		return nil, err
	}
	f.Cascade = &Cascade{Name: "bench-" + strconv.FormatUint(uint64(f.Conference), 10), MDs: mds, Secret: make([]byte, SecretLen)}
	if _, err := rand.Read(f.Cascade.Secret); err != nil {
		return nil, fmt.Errorf("benchkeys: random secret: %w", err)
	}
	for i := range f.Endpoints {
		f.Endpoints[i].MD = at[i]
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("benchkeys: %w", err)
	}
	return f, nil
}

// checkCascade checks the cascade part of f (f.Cascade set).
func (f *File) checkCascade() error {
	c := f.Cascade
	if len(c.MDs) < 2 {
		return fmt.Errorf("cascade of %d MDs, want at least 2", len(c.MDs))
	}
	if len(c.Secret) != SecretLen {
		return fmt.Errorf("cascade secret of %d octets, want %d", len(c.Secret), SecretLen)
	}
	if c.Name == "" {
		return errors.New("cascade without a conference name")
	}
	if f.Handshake {
		return errors.New("cascade in a handshake file")
	}
	seen := map[netip.AddrPort]bool{}
	for i, a := range c.MDs {
		if !a.IsValid() || a.Port() == 0 || seen[a] {
			return fmt.Errorf("cascade MD %d: bad or duplicate address %s", i, a)
		}
		seen[a] = true
	}
	for i := range f.Endpoints {
		if m := f.Endpoints[i].MD; m < 0 || m >= len(c.MDs) {
			return fmt.Errorf("endpoint %d at MD %d of %d", i, m, len(c.MDs))
		}
	}
	return nil
}

// MDOf returns the media address endpoint i sends to: its MD's in a
// cascade file, File.MD otherwise.
func (f *File) MDOf(i int) netip.AddrPort {
	if f.Cascade == nil {
		return f.MD
	}
	return f.Cascade.MDs[f.Endpoints[i].MD]
}

// MDCount is the number of MDs of the file: len(Cascade.MDs), or 1.
func (f *File) MDCount() int {
	if f.Cascade == nil {
		return 1
	}
	return len(f.Cascade.MDs)
}

// Members returns the indices of the endpoints attached to MD md (all of
// them, for md 0 of a file without a cascade).
func (f *File) Members(md int) []int {
	var out []int
	for i := range f.Endpoints {
		if f.Cascade == nil && md == 0 || f.Cascade != nil && f.Endpoints[i].MD == md {
			out = append(out, i)
		}
	}
	return out
}

// Link is what MD self installs for one peer MD: the link association's
// address (the peer's media address), tag and keys.
type Link struct {
	// Peer is the peer MD's index, Addr its media address.
	Peer int
	Addr netip.AddrPort
	// Tag is the conference's tag (cascade.Tag(Cascade.Name)).
	Tag uint32
	// Send seals what self sends to the peer, Recv opens what it
	// receives from it.
	Send, Recv *srtpfast.Keys
}

// Links returns MD self's link associations, one per peer MD, with the
// conference's link keys for the file's profile (cascade.DeriveKeys: a
// double file's links are double-profile keys whose outer half is the link
// key).
func (f *File) Links(self int) ([]Link, error) {
	c := f.Cascade
	if c == nil {
		return nil, errors.New("benchkeys: links of a file without a cascade")
	}
	if self < 0 || self >= len(c.MDs) {
		return nil, fmt.Errorf("benchkeys: MD %d of a cascade of %d", self, len(c.MDs))
	}
	var out []Link
	for peer := range c.MDs {
		if peer == self {
			continue
		}
		ekm, err := pairEKM(c.Secret, min(self, peer), max(self, peer))
		if err != nil {
			return nil, err
		}
		send, recv, err := cascade.DeriveKeys(ekm, self < peer, c.Name, f.IsDouble())
		clear(ekm)
		if err != nil {
			return nil, fmt.Errorf("benchkeys: link %d-%d: %w", self, peer, err)
		}
		out = append(out, Link{Peer: peer, Addr: c.MDs[peer], Tag: cascade.Tag(c.Name), Send: send, Recv: recv})
	}
	return out, nil
}

// pairEKM is the keying material of the link between MDs i < j, standing
// in for what their DTLS-SRTP association would export:
// HKDF-SHA256(secret, info "mdfast bench link v1" | i | j).
func pairEKM(secret []byte, i, j int) ([]byte, error) {
	info := []byte(pairLabel)
	info = binary.BigEndian.AppendUint16(info, uint16(i))
	info = binary.BigEndian.AppendUint16(info, uint16(j))
	ekm, err := hkdf.Key(sha256.New, secret, nil, string(info), ExportLen)
	if err != nil {
		return nil, fmt.Errorf("benchkeys: link keying material: %w", err)
	}
	return ekm, nil
}
