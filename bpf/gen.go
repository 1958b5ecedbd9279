package bpf

// The compiler and its flags come from the environment (BPF2GO_CC,
// BPF2GO_CFLAGS), pinned in the Makefile: run `make generate`, not
// `go generate` by hand.
//go:generate go tool bpf2go -target bpfel -type counter classify classify.c
