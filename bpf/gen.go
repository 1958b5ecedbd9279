package bpf

// The compiler, llvm-strip and the flags come from the environment
// (BPF2GO_CC, BPF2GO_STRIP, BPF2GO_CFLAGS), pinned in the Makefile: run
// `make generate`, not `go generate` by hand. The flags include -nostdinc
// -Iinclude: classify.c is compiled against include/ only, never the host's
// headers.
//go:generate go tool bpf2go -target bpfel -type counter classify classify.c
