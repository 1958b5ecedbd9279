/* Minimal stand-in for the UAPI <linux/ip.h>, written for mdfast's XDP
 * classifier (see bpf/include/README.md). The IPv4 header of RFC 791; the
 * kernel's saddr/daddr struct group is left out (same layout). */
#ifndef MDFAST_LINUX_IP_H
#define MDFAST_LINUX_IP_H

#include <linux/types.h>

struct iphdr {
#if defined(__LITTLE_ENDIAN_BITFIELD)
	__u8 ihl : 4, version : 4;
#else
	__u8 version : 4, ihl : 4;
#endif
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
	/* The options start here. */
};

#endif
