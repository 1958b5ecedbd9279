/* Minimal stand-in for the UAPI <linux/bpf.h>, written for mdfast's XDP
 * classifier (see bpf/include/README.md). The values are the stable BPF ABI
 * of include/uapi/linux/bpf.h: enum members are numbered explicitly here
 * where the kernel numbers them by position. */
#ifndef MDFAST_LINUX_BPF_H
#define MDFAST_LINUX_BPF_H

#include <linux/types.h>

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_XSKMAP = 17,
};

enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP = 1,
	XDP_PASS = 2,
	XDP_TX = 3,
	XDP_REDIRECT = 4,
};

/* The XDP program's context; the field order is ABI (new fields are only
 * ever appended). */
struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

#endif
