/* Minimal stand-in for the UAPI <linux/udp.h>, written for mdfast's XDP
 * classifier (see bpf/include/README.md). The UDP header of RFC 768. */
#ifndef MDFAST_LINUX_UDP_H
#define MDFAST_LINUX_UDP_H

#include <linux/types.h>

struct udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__sum16 check;
};

#endif
