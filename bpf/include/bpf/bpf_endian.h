/* Minimal stand-in for libbpf's <bpf/bpf_endian.h>, written for mdfast's XDP
 * classifier (see bpf/include/README.md): host to network order and back,
 * folded at compile time for constants (case labels, comparisons). */
#ifndef MDFAST_BPF_ENDIAN_H
#define MDFAST_BPF_ENDIAN_H

#include <linux/types.h>

#define ___bpf_swab16(x) ((__u16)((((__u16)(x) & 0x00ff) << 8) | (((__u16)(x) & 0xff00) >> 8)))

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define __bpf_htons(x) __builtin_bswap16(x)
#define __bpf_constant_htons(x) ___bpf_swab16(x)
#elif __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define __bpf_htons(x) (x)
#define __bpf_constant_htons(x) (x)
#else
#error "unknown byte order"
#endif

#define bpf_htons(x) (__builtin_constant_p(x) ? __bpf_constant_htons(x) : __bpf_htons(x))
#define bpf_ntohs(x) bpf_htons(x)

#endif
