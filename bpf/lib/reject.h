/* Reject a packet in the tc datapath: turn it, in place, into an ICMP
 * destination unreachable (type 3, code 3 "port unreachable", as kube-proxy's
 * REJECT for services without endpoints does, for TCP and UDP alike; or code
 * 4 "fragmentation needed" with the next hop's MTU, RFC 1191) addressed back
 * to its sender, and send it out of the interface it came in on.
 *
 * Entry point: rcl_reject(skb, l3_off, mtu), called from a tc ingress program
 * (l3_off: ETH_HLEN on Ethernet devices, 0 on L3 devices; mtu: 0 for port
 * unreachable, else the MTU that fragmentation needed names). Returns the tc
 * action: the redirect, or TC_ACT_SHOT when the packet must not get an error
 * (RFC 1122 3.2.2 / RFC 1812 4.3.2.7: ICMP errors and non-echo ICMP, non-first
 * fragments, link-layer broadcast/multicast, broadcast/multicast/zero/loopback
 * addresses, truncated headers) or when a helper fails.
 *
 * Reply layout (RFC 792): [Ethernet, addresses swapped] [IPv4, 20 bytes, src =
 * the original destination, dst = the original source, TTL 64] [ICMP, 8 bytes]
 * [the original IPv4 header with its options] [the first 8 bytes of its
 * payload]. Checksums are computed from scratch. */
#ifndef RCL_REJECT_H
#define RCL_REJECT_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/pkt_cls.h>

#include "bytes.h"

#define RCL_ICMP_DEST_UNREACH 3
#define RCL_ICMP_PORT_UNREACH 3
#define RCL_ICMP_FRAG_NEEDED  4
#define RCL_ICMP_ECHO         8
#define RCL_REJECT_TTL        64
#define RCL_REJECT_TOS        0xc0 /* IPTOS_PREC_INTERNETCONTROL, as Linux sends errors */
#define RCL_REJECT_QUOTE_MAX  (60 + 8) /* longest IPv4 header + 8 payload bytes */
/* skb->mark of an error this datapath made: the sender's own packet turned
 * back, so the endpoint policy of the interface it leaves by (the sender's
 * own ingress policy) lets it pass. A pod cannot set it: a packet's mark is
 * cleared when it crosses from the pod's namespace into the node's. */
#define RCL_MARK_OUR_ERROR    0x52434c45

struct rcl_icmp_err {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 unused; /* zero */
	__u16 mtu;    /* the next hop's MTU (_be) for code 4, else zero */
};

struct rcl_reject_pkt {
	struct iphdr ip;
	struct rcl_icmp_err icmp;
	__u8 quote[RCL_REJECT_QUOTE_MAX];
};

static __always_inline __u16 rcl_csum_fold(__s64 sum)
{
	__u64 s = (__u64)sum;
#pragma unroll
	for (int i = 0; i < 4; i++)
		s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* An IPv4 address (network order) that names no single unicast host: 0/8,
 * 127/8 (never valid on a wire), 224/4 multicast, 240/4 and broadcast. */
static __always_inline int rcl_reject_addr_bad(__u32 addr)
{
	__u8 first = ((__u8 *)&addr)[0];
	return first == 0 || first == 127 || first >= 224;
}

static __always_inline int rcl_reject(struct __sk_buff *skb, __u32 l3_off, __u16 mtu)
{
	struct rcl_reject_pkt out;
	struct iphdr ip;
	__u8 macs[2 * ETH_ALEN];

	__builtin_memset(&out, 0, sizeof(out));
	if (l3_off != 0 && l3_off != ETH_HLEN)
		return TC_ACT_SHOT;
	if (skb->protocol != rcl_htons(ETH_P_IP))
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, l3_off, &ip, sizeof(ip)))
		return TC_ACT_SHOT;
	if (ip.version != 4 || ip.ihl < 5)
		return TC_ACT_SHOT;
	if (ip.frag_off & rcl_htons(0x1fff))
		return TC_ACT_SHOT; /* non-first fragment: no error, as RFC 1122 says */
	if (rcl_reject_addr_bad(ip.saddr) || rcl_reject_addr_bad(ip.daddr))
		return TC_ACT_SHOT;

	__u32 hlen = (ip.ihl & 0xf) * 4;
	__u32 qlen = hlen + 8; /* header + 8 payload bytes: 28..68, a multiple of 4 */
	if (rcl_htons(ip.tot_len) < qlen || skb->len < l3_off + qlen)
		return TC_ACT_SHOT; /* truncated: nothing sound to quote */
	if (qlen > RCL_REJECT_QUOTE_MAX || qlen < 28)
		return TC_ACT_SHOT; /* for the verifier */
	if (bpf_skb_load_bytes(skb, l3_off, out.quote, qlen))
		return TC_ACT_SHOT;
	if (ip.protocol == IPPROTO_ICMP && out.quote[hlen & 0x3f] != RCL_ICMP_ECHO)
		return TC_ACT_SHOT; /* never answer an ICMP error (or reply) */

	if (l3_off == ETH_HLEN) {
		if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
			return TC_ACT_SHOT;
		if (macs[0] & 1)
			return TC_ACT_SHOT; /* link-layer broadcast or multicast */
	}

	__u32 total = sizeof(struct iphdr) + sizeof(struct rcl_icmp_err) + qlen;
	out.ip.version = 4;
	out.ip.ihl = 5;
	out.ip.tos = RCL_REJECT_TOS;
	out.ip.tot_len = rcl_htons(total);
	out.ip.frag_off = rcl_htons(0x4000); /* DF: tiny and atomic (RFC 6864) */
	out.ip.ttl = RCL_REJECT_TTL;
	out.ip.protocol = IPPROTO_ICMP;
	out.ip.saddr = ip.daddr;
	out.ip.daddr = ip.saddr;
	__s64 sum = bpf_csum_diff(NULL, 0, (__be32 *)&out.ip, sizeof(out.ip), 0);
	if (sum < 0)
		return TC_ACT_SHOT;
	out.ip.check = rcl_csum_fold(sum);

	out.icmp.type = RCL_ICMP_DEST_UNREACH;
	out.icmp.code = mtu ? RCL_ICMP_FRAG_NEEDED : RCL_ICMP_PORT_UNREACH;
	out.icmp.mtu = rcl_htons(mtu);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&out.icmp, sizeof(out.icmp) + qlen, 0);
	if (sum < 0)
		return TC_ACT_SHOT;
	out.icmp.checksum = rcl_csum_fold(sum);

	/* Exact length: trims a longer original, zero-extends a shorter one. */
	if (bpf_skb_change_tail(skb, l3_off + total, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, l3_off, &out, total, BPF_F_RECOMPUTE_CSUM))
		return TC_ACT_SHOT;
	if (l3_off == ETH_HLEN && rcl_swap_macs(skb, macs))
		return TC_ACT_SHOT;
	skb->mark = RCL_MARK_OUR_ERROR;
	return bpf_redirect(skb->ifindex, 0);
}

#endif
