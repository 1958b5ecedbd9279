package directory

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Bounds of what the directory reads and writes.
const (
	// MaxIDLen bounds an md-id (a host name fits).
	MaxIDLen = 253
	// MaxConferenceLen bounds a conference name (as control does).
	MaxConferenceLen = 255
	// MaxValueLen bounds a value read from etcd.
	MaxValueLen = 1024
)

// Kind is the profile kind of a conference's members on an MD: the link
// keys of the conference are built for it.
type Kind uint8

// Profile kinds.
const (
	// KindSingle: members use a single AEAD profile (AEAD_AES_128_GCM).
	KindSingle Kind = iota + 1
	// KindDouble: members use an RFC 8723 double profile; the link
	// carries the outer layer.
	KindDouble
)

func (k Kind) String() string {
	switch k {
	case KindSingle:
		return "single"
	case KindDouble:
		return "double"
	}
	return "unknown"
}

// ParseKind parses "single" or "double".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "single":
		return KindSingle, nil
	case "double":
		return KindDouble, nil
	}
	return 0, fmt.Errorf("%w: profile kind %q is neither single nor double", ErrEntry, truncate(s))
}

// Alive is what an MD publishes about itself.
type Alive struct {
	// Media is where peers send the link's media (the MD's media address).
	Media netip.AddrPort
	// Cascade is the UDP address of its link DTLS (cascade-listen).
	Cascade netip.AddrPort
	// Fingerprint is the SHA-256 of its cascade certificate (DER).
	Fingerprint [sha256.Size]byte
	// Started is when this incarnation of the MD started: with the
	// fingerprint it tells a restarted peer from the one a link was built
	// with.
	Started time.Time
}

// Equal reports whether a and b describe the same incarnation at the same
// addresses.
func (a Alive) Equal(b Alive) bool {
	return a.Media == b.Media && a.Cascade == b.Cascade && a.Fingerprint == b.Fingerprint && a.Started.Equal(b.Started)
}

// supersededBy reports whether a, an alive entry found under this MD's
// md-id, is an earlier incarnation of the MD that publishes self: the same
// media and cascade addresses and certificate, started no later. A
// restarted MD takes such an entry over at once; any other entry on a
// lease is another live MD's (or a later incarnation's), and is left
// alone until its lease is gone.
func (a Alive) supersededBy(self Alive) bool {
	return a.Media == self.Media && a.Cascade == self.Cascade && a.Fingerprint == self.Fingerprint &&
		!a.Started.After(self.Started)
}

type aliveJSON struct {
	Media       string `json:"media"`
	Cascade     string `json:"cascade"`
	Fingerprint string `json:"fingerprint"`
	Started     string `json:"started"`
}

type hostingJSON struct {
	Profile string `json:"profile"`
}

// Marshal encodes a for etcd.
func (a Alive) Marshal() ([]byte, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	return json.Marshal(aliveJSON{
		Media: a.Media.String(), Cascade: a.Cascade.String(),
		Fingerprint: hex.EncodeToString(a.Fingerprint[:]), Started: a.Started.UTC().Format(time.RFC3339Nano),
	})
}

func (a Alive) check() error {
	if !validAddr(a.Media) || !validAddr(a.Cascade) {
		return fmt.Errorf("%w: alive entry: media %v and cascade %v must be addresses with a port", ErrEntry, a.Media, a.Cascade)
	}
	if a.Started.IsZero() {
		return fmt.Errorf("%w: alive entry without a start time", ErrEntry)
	}
	return nil
}

func validAddr(a netip.AddrPort) bool {
	return a.IsValid() && a.Port() != 0 && !a.Addr().IsUnspecified() && !a.Addr().IsMulticast()
}

// ParseAlive parses an alive value.
func ParseAlive(b []byte) (Alive, error) {
	var a Alive
	var j aliveJSON
	if err := decode(b, &j); err != nil {
		return a, fmt.Errorf("alive entry: %w", err)
	}
	var err error
	if a.Media, err = netip.ParseAddrPort(j.Media); err != nil {
		return a, fmt.Errorf("%w: alive entry: media address: %w", ErrEntry, err)
	}
	if a.Cascade, err = netip.ParseAddrPort(j.Cascade); err != nil {
		return a, fmt.Errorf("%w: alive entry: cascade address: %w", ErrEntry, err)
	}
	a.Media = netip.AddrPortFrom(a.Media.Addr().Unmap(), a.Media.Port())
	a.Cascade = netip.AddrPortFrom(a.Cascade.Addr().Unmap(), a.Cascade.Port())
	if len(j.Fingerprint) != 2*sha256.Size {
		return a, fmt.Errorf("%w: alive entry: fingerprint of %d hex digits, want %d", ErrEntry, len(j.Fingerprint), 2*sha256.Size)
	}
	if _, err := hex.Decode(a.Fingerprint[:], []byte(j.Fingerprint)); err != nil {
		return a, fmt.Errorf("%w: alive entry: fingerprint: %w", ErrEntry, err)
	}
	if a.Started, err = time.Parse(time.RFC3339Nano, j.Started); err != nil {
		return a, fmt.Errorf("%w: alive entry: start time: %w", ErrEntry, err)
	}
	if err := a.check(); err != nil {
		return a, err
	}
	return a, nil
}

// marshalKind encodes a hosting value.
func marshalKind(k Kind) ([]byte, error) {
	if k != KindSingle && k != KindDouble {
		return nil, fmt.Errorf("%w: profile kind %d", ErrEntry, k)
	}
	return json.Marshal(hostingJSON{Profile: k.String()})
}

// ParseHosting parses a hosting value (md/conf/...).
func ParseHosting(b []byte) (Kind, error) {
	var j hostingJSON
	if err := decode(b, &j); err != nil {
		return 0, fmt.Errorf("hosting entry: %w", err)
	}
	return ParseKind(j.Profile)
}

func decode(b []byte, v any) error {
	if len(b) == 0 || len(b) > MaxValueLen {
		return fmt.Errorf("%w: value of %d octets (want 1..%d)", ErrEntry, len(b), MaxValueLen)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrEntry, err)
	}
	if d.More() {
		return fmt.Errorf("%w: trailing data after the JSON value", ErrEntry)
	}
	return nil
}

// CheckID checks an md-id: 1..MaxIDLen octets of letters, digits, '.',
// '_' and '-'.
func CheckID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: md-id of %d octets (want 1..%d)", ErrEntry, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: md-id %q: octet %#x is not a letter, digit, '.', '_' or '-'", ErrEntry, truncate(id), c)
		}
	}
	return nil
}

func checkConference(name string) error {
	if name == "" || len(name) > MaxConferenceLen {
		return fmt.Errorf("%w: conference name of %d octets (want 1..%d)", ErrEntry, len(name), MaxConferenceLen)
	}
	return nil
}

// Key paths below the store's prefix.
const (
	aliveDir = "md/alive/"
	confDir  = "md/conf/"
	mdDir    = "md/"
)

func aliveKey(id string) string { return aliveDir + id }

// hostingKey escapes the conference name: it may hold any octet,
// '/' included.
func hostingKey(conference, id string) string {
	return confDir + url.PathEscape(conference) + "/" + id
}

// entryKind says what a key under md/ is.
type entryKind uint8

const (
	entryAlive entryKind = iota + 1
	entryHosting
)

// parseKey parses a key path relative to the prefix (md/alive/<id> or
// md/conf/<escaped conference>/<id>).
func parseKey(path string) (kind entryKind, id, conference string, err error) {
	if len(path) > len(confDir)+3*MaxConferenceLen+1+MaxIDLen {
		return 0, "", "", fmt.Errorf("%w: key of %d octets", ErrEntry, len(path))
	}
	switch {
	case strings.HasPrefix(path, aliveDir):
		id = path[len(aliveDir):]
		if err := CheckID(id); err != nil {
			return 0, "", "", err
		}
		return entryAlive, id, "", nil
	case strings.HasPrefix(path, confDir):
		rest := path[len(confDir):]
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			return 0, "", "", fmt.Errorf("%w: hosting key %q without an md-id", ErrEntry, truncate(path))
		}
		id = rest[i+1:]
		if err := CheckID(id); err != nil {
			return 0, "", "", err
		}
		esc := rest[:i]
		if conference, err = url.PathUnescape(esc); err != nil {
			return 0, "", "", fmt.Errorf("%w: hosting key: conference: %w", ErrEntry, err)
		}
		if url.PathEscape(conference) != esc {
			return 0, "", "", fmt.Errorf("%w: hosting key: conference %q is not canonically escaped", ErrEntry, truncate(esc))
		}
		if err := checkConference(conference); err != nil {
			return 0, "", "", err
		}
		return entryHosting, id, conference, nil
	}
	return 0, "", "", fmt.Errorf("%w: key %q is neither md/alive/ nor md/conf/", ErrEntry, truncate(path))
}

// truncate keeps error messages about outside strings short.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
