// Package callgrind reads the profiles valgrind's callgrind tool writes
// (the callgrind format, https://valgrind.org/docs/manual/cl-format.html):
// the events, the totals, each function's self cost and the inclusive cost
// of the calls made to it. It is what bench/ir reads instruction counts
// with; it keeps no per-line or per-file detail and never runs valgrind.
package callgrind
