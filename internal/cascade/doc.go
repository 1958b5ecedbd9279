// Package cascade owns the links between Media Distributors (RFC 8871
// section 4.5.1, cascading; issue 14): one DTLS-SRTP association per pair
// of MDs that share at least one conference, and per shared conference one
// link association in the key table with keys of its own.
//
// # Links
//
// The directory (internal/directory) says which MDs are alive, at which
// addresses, with which certificate fingerprint, and which conferences each
// hosts members of. For every peer that hosts a conference this MD hosts
// too, the Manager keeps one association of our DTLS stack
// (internal/dtls, profile SRTP_AEAD_AES_128_GCM) over the cascade-listen
// UDP socket; the MD with the lexicographically smaller md-id is the
// client. Both sides verify the other's chain against the cascade CA and
// its SHA-256 fingerprint against the one the peer published: anyone else
// is refused. A peer whose alive entry changed (a restart: new start time,
// new certificate or address) gets a new association; a peer whose entry
// vanished (its lease expired) loses its links.
//
// # Keys (DeriveKeys)
//
// From the association's exported keying material (RFC 5705, label
// "EXTRACTOR-dtls_srtp"), each conference gets its own keys, one per
// direction: HKDF-SHA256 with info "mdfast cascade v1" | direction octet |
// conference name, 16 octets of key and 12 of salt. No (key, SSRC, index)
// is shared between conferences. A conference whose members use the
// RFC 8723 double profile gets DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM
// keys whose outer (hop-by-hop) half is the derived key, so the worker
// carries the inner layer, the OHB and the EKTField across the hop as for
// a local member; otherwise AEAD_AES_128_GCM. The exported material and
// the derived octets are zeroed once the srtpfast keys are built.
//
// Each (peer, conference) is installed through Table as a
// keytable.Association with Link set and Tag = Tag(conference name), the
// value every packet on the hop carries as its last CSRC. A new
// association with the same peer re-keys the same link IDs. A conference
// whose link this association already keyed (removed since, or moved to
// another table ID or kind) gets a new association rather than its old
// keys again under a fresh SRTP index and replay window.
//
// # What it must not do
//
// Import the data plane (it writes the key table through Table, which
// keytable.Table satisfies), forward anything itself, trust a datagram
// from an address that is not a known peer's cascade address, or end an
// established association on anything unauthenticated (a ClientHello from
// a peer's address starts a candidate association that replaces the
// current one only once it completes).
package cascade
