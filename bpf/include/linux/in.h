/* Minimal stand-in for the UAPI <linux/in.h>, written for mdfast's XDP
 * classifier (see bpf/include/README.md). Protocol numbers from the IANA
 * registry, as the kernel defines them. */
#ifndef MDFAST_LINUX_IN_H
#define MDFAST_LINUX_IN_H

#define IPPROTO_UDP 17

#endif
