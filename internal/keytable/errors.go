package keytable

import "errors"

// Errors returned by the Table's write operations, always wrapped with what
// was being done (test with errors.Is).
var (
	// ErrTableFull is returned by Install for a new association when
	// Config.MaxAssociations associations are installed.
	ErrTableFull = errors.New("keytable: table full")
	// ErrNotFound is returned for an association that is not installed.
	ErrNotFound = errors.New("keytable: association not found")
	// ErrAddrInUse is returned when the transport address is already the
	// address of another association (remove that one first).
	ErrAddrInUse = errors.New("keytable: transport address in use by another association")
	// ErrSSRCConflict is returned by SetConference when the endpoint has
	// received, under its current send key, an SSRC that another sender
	// already uses in the target conference: forwarding that sender to it
	// could repeat a (key, IV) pair. The association keeps its current
	// conference; remove it (or re-key it) instead.
	ErrSSRCConflict = errors.New("keytable: SSRC conflict in target conference")
	// ErrGraceTimeout is returned by a write operation whose change is
	// published (the table already reflects it) but which gave up waiting
	// for a Reader still inside a batch that began before the change: that
	// worker may still use the old state until it calls End. The error
	// names the stuck readers.
	ErrGraceTimeout = errors.New("keytable: grace period timed out waiting for a reader")
	// ErrInvalid is returned for an invalid argument: nil association ID,
	// invalid or zero-port address, nil keys, a conference change through
	// Install, or an invalid Config.
	ErrInvalid = errors.New("keytable: invalid argument")
	// ErrSameKeys is returned for a re-key that brings the receive keys
	// the association already has (a MediaKeys message delivered twice):
	// installing them would give the endpoint fresh replay state for keys
	// it already used, and every packet forwarded under them would be
	// accepted again. Nothing is changed.
	ErrSameKeys = errors.New("keytable: re-key with the keys already installed")
)
