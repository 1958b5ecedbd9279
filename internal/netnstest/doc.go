// Package netnstest is a test helper for privileged networking tests: it
// creates network namespaces with unique names ("mdf-<pid>-<n>") joined by a
// veth pair carrying 198.18.0.0/15 addresses (and, in a star made by
// NewStar6, 2001:db8::/64 addresses as well), runs code inside a namespace
// on a goroutine locked to its OS thread, and builds test frames
// (Ethernet/IPv4/UDP with correct checksums).
//
// Everything it creates is removed in t.Cleanup. Callers skip when not root;
// the package itself never touches the host's namespace beyond creating and
// deleting the named ones.
package netnstest
