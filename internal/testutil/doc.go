// Package testutil holds the helpers tests of several packages share: the
// skip of privileged tests when not root (NeedRoot) and the goroutine leak
// check (CheckGoroutines, GoroutinesGone). Network namespace topologies are
// in package netnstest.
//
// It is for tests only: production code must not import it (the rule is
// checked by internal/archtest).
package testutil
