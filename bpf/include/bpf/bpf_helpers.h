/* Minimal stand-in for libbpf's <bpf/bpf_helpers.h> and the part of its
 * generated <bpf/bpf_helper_defs.h> that mdfast's XDP classifier uses (see
 * bpf/include/README.md). The macros are libbpf's conventions for BTF-defined
 * maps and ELF sections, which cilium/ebpf reads; a helper is called by its
 * number, which is stable BPF ABI (enum bpf_func_id in the UAPI
 * <linux/bpf.h>, FN(map_lookup_elem) = 1, FN(ktime_get_ns) = 5,
 * FN(redirect_map) = 51, FN(xdp_adjust_meta) = 54). */
#ifndef MDFAST_BPF_HELPERS_H
#define MDFAST_BPF_HELPERS_H

#include <linux/types.h>

#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

#define SEC(name) __attribute__((section(name), used))

#undef __always_inline
#define __always_inline inline __attribute__((always_inline))

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
struct xdp_md;

static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;
static long (*bpf_xdp_adjust_meta)(struct xdp_md *xdp_md, int delta) = (void *)54;

#endif
