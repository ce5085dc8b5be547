/* XDP program for host endpoints with untracked (doNotTrack) policy: judged
 * on arrival, before the stack and before conntrack. A failsafe port to the
 * host passes first; a Deny drops here; an Allow leaves a word in the
 * packet's metadata (RCL_XDP_META_UNTRACKED), and tc skips policy for it;
 * anything no untracked rule decided goes on to tc. Compiled by bcc with the
 * tc set's flags; it shares its policy tables (bpf/lib/policy_lookup.h). */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include "lib/iface_types.h"

#ifndef RCL_IFSTATE_SIZE
#define RCL_IFSTATE_SIZE 1001
#endif
#include "lib/policy_lookup.h"

#define rcl_xdp_htons(x) ((__u16)__builtin_bswap16((__u16)(x)))

/* The address class, flat in the number of rules: the address itself in the
 * exact table, then, longest first, each prefix length the program has
 * (ep->nets), as an exact entry of the masked address. A hash lookup per
 * length the program uses, where the LPM trie's walk grows with its entries
 * (and every program's share the trie). Every length is written into the key
 * whether or not it is asked, so that the verifier's paths through the
 * unrolled loop merge. */
static __always_inline __u32 rcl_xdp_addr_class(__u32 prog, __u32 nets, __u32 addr)
{
	struct rcl_pol_cls_key k = {};
	k.prog = prog;
	k.kind = RCL_POL_K_ADDR;
	k.addr = addr;
	struct rcl_pol_cls *c = rcl_pol_exact.lookup(&k);
	if (c)
		return c->cls;
	__u32 host = __builtin_bswap32(addr);
	k.kind = RCL_POL_K_NET;
#pragma unroll
	for (int len = 31; len >= 0; len--) {
		k.proto = len;
		k.addr = len ? __builtin_bswap32(host & (0xffffffffU << (32 - len))) : 0;
		if (nets & (1U << len)) {
			c = rcl_pol_exact.lookup(&k);
			if (c)
				return c->cls;
		}
	}
	return 0;
}

int rcl_xdp(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	struct rcl_xdp_ep *ep = rcl_xdp_ep.lookup(&ifindex);
	if (!ep)
		return XDP_PASS;
	__u32 slot = ep->slot;
	__u32 prog = ep->prog;
	struct rcl_xdp_stats *stats = rcl_xdp_stats.lookup(&slot);
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != rcl_xdp_htons(ETH_P_IP))
		return XDP_PASS; /* not IPv4: tc decides */
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5 || (ip->frag_off & rcl_xdp_htons(0x1fff)))
		return XDP_PASS; /* options or a later fragment: tc decides */
	__u8 proto = ip->protocol;
	__u16 dval = 0, sval = 0;
	__u16 *l4 = (void *)(ip + 1);
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == 132 || proto == 136) {
		if ((void *)(l4 + 2) > data_end)
			return XDP_PASS;
		sval = l4[0];
		dval = l4[1];
	} else if (proto == IPPROTO_ICMP) {
		if ((void *)(l4 + 1) > data_end)
			return XDP_PASS;
		dval = l4[0];
	}
	if (rcl_is_host_ip(ip->daddr) && rcl_failsafe_allows(RCL_FS_IN, proto, dval, ip->saddr)) {
		if (stats)
			stats->failsafe++;
		return XDP_PASS;
	}
	__u32 rule;
	__u32 aclass = rcl_xdp_addr_class(prog, ep->nets, ip->saddr);
	int action = rcl_pol_decide_cls(prog, aclass, proto, dval, sval, &rule);
	if (action == RCL_POL_DENY) {
		if (stats)
			stats->dropped++;
		rcl_untracked_count(slot, prog, rule, RCL_UNTRACKED_IN);
		return XDP_DROP;
	}
	if (action == RCL_POL_ALLOW) {
		if (stats)
			stats->allowed++;
		if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(__u32)))
			return XDP_PASS; /* no room for metadata: judged again by tc */
		void *meta = (void *)(long)ctx->data_meta;
		data = (void *)(long)ctx->data;
		if (meta + sizeof(__u32) > data)
			return XDP_PASS;
		*(__u32 *)meta = RCL_XDP_META_UNTRACKED;
		return XDP_PASS;
	}
	if (stats)
		stats->passed++;
	return XDP_PASS;
}
