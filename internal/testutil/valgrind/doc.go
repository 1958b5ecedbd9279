// Package valgrind makes valgrind client requests from Go: whether the
// program runs under valgrind, and callgrind's collection and dump
// requests (valgrind.h and callgrind.h, VALGRIND_DO_CLIENT_REQUEST). The
// requests are the special no-op instruction sequence valgrind recognises,
// so natively each is a call that does nothing and returns the default.
//
// It is for tests and benchmarks (bench/ir): per-thread instruction counts
// of exactly the code between two requests, which callgrind's call graph
// cannot give for Go code that the scheduler may switch stacks under.
// Only linux/amd64 makes real requests; elsewhere every request is a
// no-op.
package valgrind
