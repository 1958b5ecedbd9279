/* Minimal stand-in for the UAPI <linux/if_ether.h>, written for mdfast's XDP
 * classifier (see bpf/include/README.md). EtherTypes from the IEEE registry,
 * as the kernel defines them. */
#ifndef MDFAST_LINUX_IF_ETHER_H
#define MDFAST_LINUX_IF_ETHER_H

#include <linux/types.h>

#define ETH_ALEN 6
#define ETH_HLEN 14

#define ETH_P_IP 0x0800
#define ETH_P_8021Q 0x8100
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021AD 0x88A8

/* Packed, as in the kernel: h_proto is at offset 12, not 2-aligned in
 * general, and the compiler loads it byte by byte. */
struct ethhdr {
	unsigned char h_dest[ETH_ALEN];
	unsigned char h_source[ETH_ALEN];
	__be16 h_proto;
} __attribute__((packed));

#endif
