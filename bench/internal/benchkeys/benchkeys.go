// Package benchkeys is the key file of a benchmark: for every simulated
// endpoint its transport address, its SSRC and the hop-by-hop master keys of
// both directions (AEAD_AES_128_GCM), written once by the driver and read by
// the load generator, the mdfast harness and the baseline forwarder, so that
// every forwarder under test gets the same keys the endpoints use.
//
// A double file (ProfileDouble, RFC 8723
// DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM, 0x0009) also carries the
// conference's end-to-end key and salt (the inner halves of every double
// master key); the endpoints' keys are then the hop-by-hop (outer) halves,
// the only ones a forwarder gets. Only the load generator reads the
// end-to-end key (package double); the baseline refuses double files
// (pion/srtp has no double profile). A double handshake file gets its
// end-to-end salt from the KD: it is the salt of the conference's EKTKey
// (RFC 8870), which the handshakes deliver; the end-to-end key stays the
// file's (one key for every simulated endpoint: the forwarder cannot tell).
//
// In a handshake file (GenerateHandshake, for the full-system path) the
// endpoints carry a DTLS identity instead (tls-id, client certificate and
// key) and the KD's fingerprint: the load generator gets the keys from real
// DTLS-SRTP handshakes through mdfast to keydist (SetKeys).
//
// It must not be used outside benchmarks: the keys are written to a file in
// the clear.
package benchkeys

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/pion/srtp/v3"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// Profile is the benchmark's SRTP protection profile; ProfileDouble the
// RFC 8723 one whose outer layer the data plane handles.
const (
	Profile       = "AEAD_AES_128_GCM"
	ProfileDouble = "DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM"
)

const (
	keyLen  = 16
	saltLen = 12
)

// Endpoint is one simulated endpoint (one DTLS association in a real run).
// "Client" keys protect what the endpoint sends (client_write), "server" keys
// what the Media Distributor sends to it (server_write), as in RFC 5764.
type Endpoint struct {
	// ID is the association ID the mdfast harness installs.
	ID uuid.UUID `json:"id"`
	// Addr is the endpoint's transport address.
	Addr netip.AddrPort `json:"addr"`
	// SSRC is the SSRC the endpoint sends with.
	SSRC uint32 `json:"ssrc"`
	// ClientKey and ClientSalt are the client_write master key and salt.
	ClientKey  []byte `json:"client_key"`
	ClientSalt []byte `json:"client_salt"`
	// ServerKey and ServerSalt are the server_write master key and salt.
	ServerKey  []byte `json:"server_key"`
	ServerSalt []byte `json:"server_salt"`
	// TLSID, Cert (DER) and CertKey (PKCS #8 DER) are the endpoint's
	// DTLS identity in a handshake file.
	TLSID   string `json:"tls_id,omitempty"`
	Cert    []byte `json:"cert,omitempty"`
	CertKey []byte `json:"cert_key,omitempty"`
	// MD is, in a cascade file, the index in Cascade.MDs of the MD the
	// endpoint is attached to (sends to and receives from).
	MD int `json:"md,omitempty"`
}

// File is the benchmark's key file.
type File struct {
	// Profile is Profile or ProfileDouble.
	Profile string `json:"profile"`
	// Conference is the one conference every endpoint is in.
	Conference uint32 `json:"conference"`
	// E2EKey and E2ESalt are the conference's end-to-end master key and
	// salt (the inner halves), in a double file only.
	E2EKey  []byte `json:"e2e_key,omitempty"`
	E2ESalt []byte `json:"e2e_salt,omitempty"`
	// MD is the forwarder's media address.
	MD netip.AddrPort `json:"md"`
	// Endpoints are the simulated endpoints.
	Endpoints []Endpoint `json:"endpoints"`
	// Handshake says that the endpoints have identities and no keys yet;
	// KDFingerprint is then the Key Distributor's DTLS certificate
	// fingerprint ("sha-256 AB:CD:...").
	Handshake     bool   `json:"handshake,omitempty"`
	KDFingerprint string `json:"kd_fingerprint,omitempty"`
	// Cascade, when set, splits the conference over several MDs joined by
	// links (see cascade.go); MD is then Cascade.MDs[0].
	Cascade *Cascade `json:"cascade,omitempty"`
}

// Generate makes n endpoints at addr:basePort, addr:basePort+1, ... with
// fresh random keys and distinct SSRCs.
func Generate(n int, addr netip.Addr, basePort uint16, md netip.AddrPort) (*File, error) {
	return GenerateProfile(Profile, n, addr, basePort, md)
}

// GenerateProfile is Generate for profile (Profile or ProfileDouble; a
// double file gets a fresh end-to-end key and salt too).
func GenerateProfile(profile string, n int, addr netip.Addr, basePort uint16, md netip.AddrPort) (*File, error) {
	if n < 1 || int(basePort)+n > 65535 {
		return nil, fmt.Errorf("benchkeys: %d endpoints from port %d", n, basePort)
	}
	f := &File{Profile: profile, Conference: 1, MD: md}
	switch profile {
	case Profile:
	case ProfileDouble:
		f.E2EKey, f.E2ESalt = make([]byte, keyLen), make([]byte, saltLen)
		if _, err := rand.Read(f.E2EKey); err != nil {
			return nil, fmt.Errorf("benchkeys: random keys: %w", err)
		}
		if _, err := rand.Read(f.E2ESalt); err != nil {
			return nil, fmt.Errorf("benchkeys: random keys: %w", err)
		}
	default:
		return nil, fmt.Errorf("benchkeys: profile %q, want %q or %q", profile, Profile, ProfileDouble)
	}
	for i := range n {
		e := Endpoint{
			ID:         uuid.New(),
			Addr:       netip.AddrPortFrom(addr, basePort+uint16(i)),
			SSRC:       0x4d440000 + uint32(i),
			ClientKey:  make([]byte, keyLen),
			ClientSalt: make([]byte, saltLen),
			ServerKey:  make([]byte, keyLen),
			ServerSalt: make([]byte, saltLen),
		}
		for _, b := range [][]byte{e.ClientKey, e.ClientSalt, e.ServerKey, e.ServerSalt} {
			if _, err := rand.Read(b); err != nil {
				return nil, fmt.Errorf("benchkeys: random keys: %w", err)
			}
		}
		f.Endpoints = append(f.Endpoints, e)
	}
	return f, nil
}

// GenerateHandshake makes n endpoints like GenerateProfile, but with a
// fresh DTLS identity each and no keys, for a run whose keys come from
// handshakes with the KD whose DTLS certificate has fingerprint kd.
func GenerateHandshake(profile string, n int, addr netip.Addr, basePort uint16, md netip.AddrPort, kd keydist.Fingerprint) (*File, error) {
	f, err := GenerateProfile(profile, n, addr, basePort, md)
	if err != nil {
		return nil, err
	}
	f.Handshake, f.KDFingerprint = true, "sha-256 "+kd.String()
	f.E2ESalt = nil // the conference's, from the KD's EKTKey
	for i := range f.Endpoints {
		e := &f.Endpoints[i]
		e.ClientKey, e.ClientSalt, e.ServerKey, e.ServerSalt = nil, nil, nil, nil
		id, err := endpointsim.NewIdentity(24 * time.Hour)
		if err != nil {
			return nil, fmt.Errorf("benchkeys: %w", err)
		}
		if e.CertKey, err = x509.MarshalPKCS8PrivateKey(id.Cert.PrivateKey); err != nil {
			return nil, fmt.Errorf("benchkeys: endpoint key: %w", err)
		}
		e.TLSID, e.Cert = id.TLSID, id.Cert.Certificate[0]
	}
	return f, nil
}

// Identities are the endpoints' DTLS identities (a handshake file), in
// order.
func (f *File) Identities() ([]endpointsim.Identity, error) {
	out := make([]endpointsim.Identity, len(f.Endpoints))
	for i := range f.Endpoints {
		e := &f.Endpoints[i]
		key, err := x509.ParsePKCS8PrivateKey(e.CertKey)
		if err != nil {
			return nil, fmt.Errorf("benchkeys: endpoint %d key: %w", i, err)
		}
		out[i] = endpointsim.Identity{TLSID: e.TLSID, Cert: tls.Certificate{Certificate: [][]byte{e.Cert}, PrivateKey: key}}
	}
	return out, nil
}

// SetKeys stores the keys a handshake exported (for a double file, the
// hop-by-hop halves) as endpoint i's keys.
func (f *File) SetKeys(i int, k *endpointsim.Keys) error {
	want := endpointsim.ProfileAEADAES128GCM
	if f.IsDouble() {
		want = endpointsim.ProfileDoubleAEADAES128GCM
	}
	if k.Profile != want {
		return fmt.Errorf("benchkeys: negotiated profile %#04x, want %s", uint16(k.Profile), f.Profile)
	}
	e := &f.Endpoints[i]
	e.ClientKey, e.ClientSalt, e.ServerKey, e.ServerSalt = k.ClientKey, k.ClientSalt, k.ServerKey, k.ServerSalt
	return nil
}

// SetE2ESalt stores the conference's end-to-end master salt (from the
// KD's EKTKey) in a double file.
func (f *File) SetE2ESalt(salt []byte) error {
	if !f.IsDouble() || len(salt) < saltLen {
		return fmt.Errorf("benchkeys: end-to-end salt of %d octets for a %s file", len(salt), f.Profile)
	}
	f.E2ESalt = append([]byte(nil), salt[:saltLen]...)
	return nil
}

// Write stores f at path (mode 0600).
func (f *File) Write(path string) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("benchkeys: encode: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("benchkeys: write %s: %w", path, err)
	}
	return nil
}

// Load reads and checks a key file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("benchkeys: read: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("benchkeys: decode %s: %w", path, err)
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("benchkeys: %s: %w", path, err)
	}
	return &f, nil
}

func (f *File) check() error {
	switch f.Profile {
	case Profile:
	case ProfileDouble:
		if len(f.E2EKey) != keyLen || (!f.Handshake || len(f.E2ESalt) != 0) && len(f.E2ESalt) != saltLen {
			return errors.New("double file: wrong end-to-end key or salt length")
		}
	default:
		return fmt.Errorf("profile %q, want %q or %q", f.Profile, Profile, ProfileDouble)
	}
	if len(f.Endpoints) == 0 {
		return errors.New("no endpoints")
	}
	if f.Handshake {
		if _, err := keydist.ParseFingerprint(f.KDFingerprint); err != nil {
			return fmt.Errorf("KD fingerprint: %w", err)
		}
	}
	if f.Cascade != nil {
		if err := f.checkCascade(); err != nil {
			return err
		}
	} else {
		for i := range f.Endpoints {
			if f.Endpoints[i].MD != 0 {
				return fmt.Errorf("endpoint %d at MD %d of a file without a cascade", i, f.Endpoints[i].MD)
			}
		}
	}
	seen := map[netip.AddrPort]bool{}
	for i, e := range f.Endpoints {
		if !e.Addr.IsValid() || seen[e.Addr] {
			return fmt.Errorf("endpoint %d: bad or duplicate address %s", i, e.Addr)
		}
		seen[e.Addr] = true
		if f.Handshake {
			if e.TLSID == "" || len(e.Cert) == 0 || len(e.CertKey) == 0 {
				return fmt.Errorf("endpoint %d: no DTLS identity in a handshake file", i)
			}
			continue
		}
		if len(e.ClientKey) != keyLen || len(e.ServerKey) != keyLen ||
			len(e.ClientSalt) != saltLen || len(e.ServerSalt) != saltLen {
			return fmt.Errorf("endpoint %d: wrong key or salt length", i)
		}
	}
	return nil
}

// IsDouble says whether f is a double (RFC 8723) file.
func (f *File) IsDouble() bool { return f.Profile == ProfileDouble }

// SRTPProfile is f's profile as srtpfast numbers it.
func (f *File) SRTPProfile() srtpfast.Profile {
	if f.IsDouble() {
		return srtpfast.ProfileDoubleAEADAES128GCM
	}
	return srtpfast.ProfileAEADAES128GCM
}

// ClientKeys returns the client_write keys as srtpfast.Keys for profile p
// (File.SRTPProfile; for a double profile the outer halves): what the
// forwarder opens, and what a fast sender seals with.
func (e *Endpoint) ClientKeys(p srtpfast.Profile) (*srtpfast.Keys, error) {
	return srtpfast.NewKeys(p, e.ClientKey, e.ClientSalt, nil)
}

// ServerKeys returns the server_write keys as srtpfast.Keys for profile p.
func (e *Endpoint) ServerKeys(p srtpfast.Profile) (*srtpfast.Keys, error) {
	return srtpfast.NewKeys(p, e.ServerKey, e.ServerSalt, nil)
}

// DoubleKeys returns endpoint i's keys of a double file as the endpoint
// side of RFC 8723 (package double) holds them: the conference's
// end-to-end key and the endpoint's own hop-by-hop keys.
func (f *File) DoubleKeys(i int) (double.Keys, error) {
	if !f.IsDouble() {
		return double.Keys{}, fmt.Errorf("benchkeys: profile %q is not double", f.Profile)
	}
	e := &f.Endpoints[i]
	return double.Keys{E2EKey: f.E2EKey, E2ESalt: f.E2ESalt,
		ClientHBHKey: e.ClientKey, ClientHBHSalt: e.ClientSalt,
		ServerHBHKey: e.ServerKey, ServerHBHSalt: e.ServerSalt}, nil
}

// keys are the endpoint's keys as endpointsim holds them.
func (e *Endpoint) keys() *endpointsim.Keys {
	return &endpointsim.Keys{Profile: srtp.ProtectionProfileAeadAes128Gcm,
		ClientKey: e.ClientKey, ClientSalt: e.ClientSalt, ServerKey: e.ServerKey, ServerSalt: e.ServerSalt}
}

// ClientContext returns a pion/srtp context for the client_write keys (of a
// single-layer file: pion/srtp has no double profile).
func (e *Endpoint) ClientContext(opts ...srtp.ContextOption) (*srtp.Context, error) {
	return e.keys().SendContext(opts...)
}

// ServerContext returns a pion/srtp context for the server_write keys.
func (e *Endpoint) ServerContext(opts ...srtp.ContextOption) (*srtp.Context, error) {
	return e.keys().ReceiveContext(opts...)
}
