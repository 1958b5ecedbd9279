/* Minimal stand-in for the UAPI <linux/ipv6.h>, written for mdfast's XDP
 * classifier (see bpf/include/README.md). The fixed IPv6 header of RFC 8200;
 * the kernel's saddr/daddr struct group is left out (same layout). */
#ifndef MDFAST_LINUX_IPV6_H
#define MDFAST_LINUX_IPV6_H

#include <linux/types.h>
#include <linux/in6.h>

struct ipv6hdr {
#if defined(__LITTLE_ENDIAN_BITFIELD)
	__u8 priority : 4, version : 4;
#else
	__u8 version : 4, priority : 4;
#endif
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	struct in6_addr saddr;
	struct in6_addr daddr;
};

#endif
