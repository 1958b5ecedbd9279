#include "textflag.h"

// func clientRequest(args *[6]uint64, def uint64) uint64
//
// valgrind.h's amd64 VALGRIND_DO_CLIENT_REQUEST: RAX points at the
// arguments, RDX holds the default and receives the result, and the
// preamble (rol rdi by 3, 13, 61, 51: 128 bits, no change) followed by
// xchg rbx, rbx is what valgrind recognises. Written as bytes so that the
// encoding is exactly valgrind's.
TEXT ·clientRequest(SB), NOSPLIT, $0-24
	MOVQ args+0(FP), AX
	MOVQ def+8(FP), DX
	BYTE $0x48; BYTE $0xc1; BYTE $0xc7; BYTE $0x03 // rolq $3, %rdi
	BYTE $0x48; BYTE $0xc1; BYTE $0xc7; BYTE $0x0d // rolq $13, %rdi
	BYTE $0x48; BYTE $0xc1; BYTE $0xc7; BYTE $0x3d // rolq $61, %rdi
	BYTE $0x48; BYTE $0xc1; BYTE $0xc7; BYTE $0x33 // rolq $51, %rdi
	BYTE $0x48; BYTE $0x87; BYTE $0xdb             // xchgq %rbx, %rbx
	MOVQ DX, ret+16(FP)
	RET
