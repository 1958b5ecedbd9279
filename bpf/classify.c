//go:build ignore

// classify.c: the XDP classifier of the Media Distributor.
//
// It looks at every frame received on the interface and decides, from the
// headers and the first octet of the UDP payload (RFC 7983), where the frame
// goes:
//
//   RTP/RTCP (128..191) to a media port -> the AF_XDP socket of the RX queue
//                                          (XDP_PASS when none is registered)
//   DTLS (20..63) or STUN (0..3)        -> XDP_PASS (kernel UDP socket), or
//                                          with slow_to_xsk the AF_XDP socket
//                                          of the RX queue (XDP_PASS when none)
//   anything else to a media port       -> XDP_DROP (empty payload included)
//   IP fragments                        -> XDP_PASS (the kernel reassembles)
//   every other frame                   -> XDP_PASS, untouched
//
// Parsing: Ethernet with at most one 802.1Q or 802.1ad tag; IPv4 with options
// (IHL honoured); IPv6 with up to MAX_IPV6_EXT hop-by-hop, routing or
// destination-options extension headers before UDP. Any other IPv6 extension
// header (AH, ESP, mobility, ...) makes the frame "other". A frame that ends
// before the UDP header is complete is passed untouched (the kernel drops it).
// Once the UDP header is complete and its destination is a media port, the
// UDP length decides: shorter than 8 or longer than the IP payload or the
// frame -> dropped as malformed; exactly 8 -> dropped as empty. Only a
// datagram whose payload is entirely inside the frame is ever redirected.
//
// Every verdict is counted in a per-CPU array indexed by enum counter, which
// loader.go mirrors as Go constants.
//
// Receive time: every frame redirected to an AF_XDP socket carries, in the
// XDP metadata in front of the packet, a struct rx_meta with the time the
// classifier redirected it (bpf_ktime_get_ns, CLOCK_MONOTONIC). The kernel
// copies the metadata into the UMEM in front of the frame (copy mode) or
// leaves it there (zero-copy); afxdp.Socket.RxTime reads it, and the
// workers measure from it how long each packet stayed in the Media
// Distributor (its dwell). A driver without metadata support makes
// bpf_xdp_adjust_meta fail: the frame is redirected without it. A frame the
// map does not take (no socket on the RX queue) is passed without it.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_IPV6_EXT 3
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

// Keep in sync with the Counter constants in loader.go (a test checks it).
enum counter {
	COUNTER_REDIRECT = 0,      // RTP/RTCP redirected into the XSKMAP
	COUNTER_PASS_NO_SOCKET,    // RTP/RTCP, no AF_XDP socket on the RX queue
	COUNTER_PASS_DTLS,         // DTLS to a media port
	COUNTER_PASS_STUN,         // STUN to a media port
	COUNTER_PASS_FRAGMENT,     // IPv4 or IPv6 fragment
	COUNTER_PASS_TRUNCATED,    // frame ends inside the L2/L3/L4 headers
	COUNTER_PASS_OTHER,        // not UDP to a media port
	COUNTER_DROP_JUNK,         // media port, first octet of no known class
	COUNTER_DROP_EMPTY,        // media port, empty UDP payload
	COUNTER_DROP_MALFORMED,    // media port, UDP length inconsistent
	COUNTER_REDIRECT_SLOW,     // DTLS or STUN redirected into the XSKMAP (slow_to_xsk)
	COUNTER_MAX,
};

// slow_to_xsk is set by the loader (bpf.Options.SlowToXSK). When set, DTLS
// and STUN go to the AF_XDP socket of the RX queue like RTP/RTCP, and the
// Media Distributor's workers hand them to its slow path: a flood of them
// then meets the MD's own triage (stateless answers, a priority lane for
// known endpoints) instead of overflowing one kernel socket's receive queue
// in front of it. IP fragments still go to the kernel, which reassembles.
volatile const __u32 slow_to_xsk = 0;

// no_rx_time is set by the loader (bpf.Options.NoRxTime): redirected frames
// then carry no struct rx_meta.
volatile const __u32 no_rx_time = 0;

// RX_META_MAGIC marks a struct rx_meta ("mdT1" read as a little-endian
// word). Keep it and the layout in sync with afxdp.RxMetaMagic and
// afxdp.RxMetaLen (a test checks the frames of a real socket).
#define RX_META_MAGIC 0x3154646d

// rx_meta is the XDP metadata of a redirected frame, right in front of the
// packet: 16 octets (a multiple of 4, at most 32, as bpf_xdp_adjust_meta
// requires), in host byte order.
struct rx_meta {
	__u32 magic;    // RX_META_MAGIC
	__u32 reserved; // 0
	__u64 rx_ns;    // bpf_ktime_get_ns() at the redirect
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// Media ports in host byte order; the value is unused (set to 1).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} media_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, enum counter); // puts the enum into BTF for bpf2go -type
	__type(value, __u64);
} counters SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct ipv6_opt_hdr_min {
	__u8 nexthdr;
	__u8 hdrlen;
};

static __always_inline int count(enum counter c, int verdict)
{
	enum counter key = c;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		*v += 1;
	return verdict;
}

// redirect_xsk redirects the frame to the AF_XDP socket of its RX queue
// with its receive time in the metadata (see struct rx_meta). It returns
// XDP_REDIRECT, or XDP_PASS when no socket took the frame (the metadata is
// then taken off again).
static __always_inline long redirect_xsk(struct xdp_md *ctx)
{
	int meta = 0;
	long verdict;

	if (!no_rx_time && bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct rx_meta)) == 0) {
		// The helper moved data_meta: the verifier wants the bounds again.
		struct rx_meta *m = (void *)(long)ctx->data_meta;
		void *data = (void *)(long)ctx->data;

		if ((void *)(m + 1) <= data) {
			m->magic = RX_META_MAGIC;
			m->reserved = 0;
			m->rx_ns = bpf_ktime_get_ns();
			meta = 1;
		} else {
			bpf_xdp_adjust_meta(ctx, (int)sizeof(struct rx_meta));
		}
	}
	verdict = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	if (verdict != XDP_REDIRECT && meta)
		bpf_xdp_adjust_meta(ctx, (int)sizeof(struct rx_meta));
	return verdict;
}

// parse_eth advances *pos past the Ethernet header and at most one VLAN tag.
// It returns the EtherType in network byte order, or 0 when the frame ends.
static __always_inline __be16 parse_eth(void **pos, void *data_end)
{
	struct ethhdr *eth = *pos;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return 0;
	proto = eth->h_proto;
	*pos = eth + 1;

	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = *pos;

		if ((void *)(vlan + 1) > data_end)
			return 0;
		proto = vlan->encapsulated_proto;
		*pos = vlan + 1;
	}
	return proto;
}

// Results of the L3 parsers.
enum l3_result {
	L3_UDP = 0,   // *pos is at the UDP header, *l4_len is the IP payload length
	L3_OTHER,     // not UDP (or not a header we parse)
	L3_FRAGMENT,  // an IP fragment
	L3_TRUNCATED, // the frame ends inside the IP header
};

static __always_inline enum l3_result parse_ipv4(void **pos, void *data_end, __u32 *l4_len)
{
	struct iphdr *ip = *pos;
	__u32 hlen, tot;

	if ((void *)(ip + 1) > data_end)
		return L3_TRUNCATED;
	if (ip->version != 4 || ip->ihl < 5)
		return L3_OTHER;
	hlen = ip->ihl * 4;
	if ((void *)ip + hlen > data_end)
		return L3_TRUNCATED;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return L3_FRAGMENT;
	if (ip->protocol != IPPROTO_UDP)
		return L3_OTHER;
	tot = bpf_ntohs(ip->tot_len);
	*l4_len = tot > hlen ? tot - hlen : 0;
	*pos = (void *)ip + hlen;
	return L3_UDP;
}

static __always_inline enum l3_result parse_ipv6(void **pos, void *data_end, __u32 *l4_len)
{
	struct ipv6hdr *ip6 = *pos;
	struct ipv6_opt_hdr_min *ext;
	__u32 remaining;
	__u8 next;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return L3_TRUNCATED;
	if (ip6->version != 6)
		return L3_OTHER;
	next = ip6->nexthdr;
	remaining = bpf_ntohs(ip6->payload_len);
	*pos = ip6 + 1;

#pragma unroll
	for (i = 0; i < MAX_IPV6_EXT; i++) {
		__u32 len;

		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS)
			break;
		ext = *pos;
		if ((void *)(ext + 1) > data_end)
			return L3_TRUNCATED;
		len = ((__u32)ext->hdrlen + 1) * 8;
		if ((void *)ext + len > data_end)
			return L3_TRUNCATED;
		next = ext->nexthdr;
		remaining = remaining > len ? remaining - len : 0;
		*pos = (void *)ext + len;
	}
	if (next == IPPROTO_FRAGMENT)
		return L3_FRAGMENT;
	if (next != IPPROTO_UDP)
		return L3_OTHER;
	*l4_len = remaining;
	return L3_UDP;
}

SEC("xdp")
int classify(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *pos = (void *)(long)ctx->data;
	enum l3_result l3;
	struct udphdr *udp;
	__u32 l4_len = 0, udp_len;
	__u16 dport;
	__u8 first;
	__be16 proto;
	long verdict;

	proto = parse_eth(&pos, data_end);
	if (proto == bpf_htons(ETH_P_IP))
		l3 = parse_ipv4(&pos, data_end, &l4_len);
	else if (proto == bpf_htons(ETH_P_IPV6))
		l3 = parse_ipv6(&pos, data_end, &l4_len);
	else if (proto == 0)
		return count(COUNTER_PASS_TRUNCATED, XDP_PASS);
	else
		return count(COUNTER_PASS_OTHER, XDP_PASS);

	switch (l3) {
	case L3_UDP:
		break;
	case L3_FRAGMENT:
		return count(COUNTER_PASS_FRAGMENT, XDP_PASS);
	case L3_TRUNCATED:
		return count(COUNTER_PASS_TRUNCATED, XDP_PASS);
	default:
		return count(COUNTER_PASS_OTHER, XDP_PASS);
	}

	udp = pos;
	if ((void *)(udp + 1) > data_end)
		return count(COUNTER_PASS_TRUNCATED, XDP_PASS);
	dport = bpf_ntohs(udp->dest);
	if (!bpf_map_lookup_elem(&media_ports, &dport))
		return count(COUNTER_PASS_OTHER, XDP_PASS);

	udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp) || udp_len > l4_len)
		return count(COUNTER_DROP_MALFORMED, XDP_DROP);
	if (udp_len == sizeof(*udp))
		return count(COUNTER_DROP_EMPTY, XDP_DROP);
	// The whole payload must be in the frame: a truncated datagram is
	// never handed to the workers.
	if ((void *)udp + udp_len > data_end)
		return count(COUNTER_DROP_MALFORMED, XDP_DROP);
	if ((void *)(udp + 1) + 1 > data_end) // for the verifier; implied above
		return count(COUNTER_DROP_MALFORMED, XDP_DROP);
	first = *(__u8 *)(udp + 1);

	if (first >= 128 && first <= 191) {
		verdict = redirect_xsk(ctx);
		if (verdict == XDP_REDIRECT)
			return count(COUNTER_REDIRECT, XDP_REDIRECT);
		return count(COUNTER_PASS_NO_SOCKET, (int)verdict);
	}
	if ((first >= 20 && first <= 63) || first <= 3) {
		if (slow_to_xsk) {
			verdict = redirect_xsk(ctx);
			if (verdict == XDP_REDIRECT)
				return count(COUNTER_REDIRECT_SLOW, XDP_REDIRECT);
		}
		if (first <= 3)
			return count(COUNTER_PASS_STUN, XDP_PASS);
		return count(COUNTER_PASS_DTLS, XDP_PASS);
	}
	return count(COUNTER_DROP_JUNK, XDP_DROP);
}

char __license[] SEC("license") = "Dual MIT/GPL";
