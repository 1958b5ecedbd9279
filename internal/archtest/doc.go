// Package archtest holds the repository's architecture tests: the import
// rules DEVELOPERS.md states, checked with go list. It has no code of its
// own.
package archtest
