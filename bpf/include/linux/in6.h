/* Minimal stand-in for the UAPI <linux/in6.h>, written for mdfast's XDP
 * classifier (see bpf/include/README.md). IPv6 extension header numbers
 * from the IANA registry (RFC 8200), as the kernel defines them. */
#ifndef MDFAST_LINUX_IN6_H
#define MDFAST_LINUX_IN6_H

#include <linux/types.h>

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be16 u6_addr16[8];
		__be32 u6_addr32[4];
	} in6_u;
};

#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_DSTOPTS 60

#endif
