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
#include "lib/policy_lookup.h"

#define rcl_xdp_htons(x) ((__u16)__builtin_bswap16((__u16)(x)))

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
	__u32 aclass = rcl_pol_net_class(prog, ep->nets, ip->saddr);
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
