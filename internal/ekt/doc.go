// Package ekt is Encrypted Key Transport (RFC 8870) on the wire: the AES
// Key Wrap with Padding cipher (RFC 5649) that EKT uses, the EKTPlaintext
// (a sender's SRTP master key with its SSRC and ROC) sealed into an
// EKTCiphertext, and the EKTField appended to SRTP packets (Short, Full,
// and extension fields skipped by their length).
//
// The Media Distributor uses only FieldLen (it carries the field from
// sender to receivers untouched and never holds an EKTKey); endpoints use
// the rest. The EKTKey itself reaches endpoints in the DTLS EKTKey message
// (internal/dtls).
//
// What it must not do: allocate in FieldLen, accept a field whose length
// does not fit its packet and its type's bounds, or tell an unwrap
// failure apart in variable time.
package ekt
