/* Minimal stand-in for the UAPI <linux/types.h>, written for mdfast's XDP
 * classifier (see bpf/include/README.md). The widths are those of the BPF
 * target (LP64); the names are the kernel's, so that BTF keeps them. */
#ifndef MDFAST_LINUX_TYPES_H
#define MDFAST_LINUX_TYPES_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;

/* Network byte order (sparse's __bitwise is left out). */
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u16 __sum16;

/* Bitfield order, as <asm/byteorder.h> sets it; clang predefines the byte
 * order of the -target (bpfel or bpfeb). */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define __LITTLE_ENDIAN_BITFIELD
#elif __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define __BIG_ENDIAN_BITFIELD
#else
#error "unknown byte order"
#endif

#endif
