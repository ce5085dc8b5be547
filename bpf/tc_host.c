/* tc clsact programs for host endpoints (HostEndpoint interfaces), built
 * only on a node that has them. Compiled as bpf/tc.c is, over the same
 * maps: service NAT as there, and the host endpoint's policy (failsafe
 * ports, preDNAT, ingress policy for the host's own traffic, applyOnForward
 * policy for forwarded traffic). Compiled in parts as bpf/tc.c may be. */
#include "lib/tc_path.h"

#ifndef RCL_SKIP_rcl_tc_host_ingress
int rcl_tc_host_ingress(struct __sk_buff *skb)
{
	return rcl_ingress(skb, 1);
}
#endif

#ifndef RCL_SKIP_rcl_tc_host_judge
int rcl_tc_host_judge(struct __sk_buff *skb)
{
	return rcl_judge(skb, 1);
}
#endif

/* Never attached: tail-called by the two above for a packet NAT rejects. */
#ifndef RCL_SKIP_rcl_tc_host_reject
int rcl_tc_host_reject(struct __sk_buff *skb)
{
	return rcl_reject_entry(skb);
}
#endif

/* Never attached: masquerade, as bpf/tc.c's rcl_tc_masq. */
#ifndef RCL_SKIP_rcl_tc_host_masq
int rcl_tc_host_masq(struct __sk_buff *skb)
{
	return rcl_masq_entry(skb);
}
#endif

/* Never attached: tail-called by the ingress program for a later IPv4
 * fragment (service NAT by its first fragment's flow). */
#ifndef RCL_SKIP_rcl_tc_host_frag
int rcl_tc_host_frag(struct __sk_buff *skb)
{
	return rcl_frag_entry(skb);
}
#endif

/* Leaving through a host endpoint: its untracked (doNotTrack) egress policy
 * first, then the host's own traffic meets its egress policy (after the
 * failsafe outbound ports), forwarded traffic its applyOnForward egress
 * policy. */
#ifndef RCL_SKIP_rcl_tc_host_egress
int rcl_tc_host_egress(struct __sk_buff *skb)
{
	struct rcl_ifstate *st = rcl_ifstate_of(skb);
	if (!st)
		return TC_ACT_UNSPEC;
	st->tx_packets++;
	st->tx_bytes += skb->len;
	if (skb->mark == RCL_MARK_OUR_ERROR) { /* the sender's own packet, turned back */
		skb->mark = 0;
		return TC_ACT_UNSPEC;
	}
	if (st->flags & RCL_IF_HOST_ENDPOINT) {
		__u32 l3_off = rcl_l3_off(st->flags);
		struct rcl_pol_scratch *ps = rcl_pol_scratch_get();
		/* untracked (doNotTrack) egress policy first, before conntrack */
		int untracked = ps ? rcl_pol_untracked_out(skb, l3_off, ps) : RCL_POL_NOMATCH;
		if (untracked == RCL_POL_DENY) {
			st->dropped++;
			return TC_ACT_SHOT;
		}
		if (untracked == RCL_POL_ALLOW)
			return TC_ACT_UNSPEC;
		/* a flow this node masqueraded: judged as forwarded traffic where
		 * it arrived, and its replies pass there too */
		if (rcl_masq_leaving(skb, l3_off))
			return TC_ACT_UNSPEC;
		int pol = ps ? rcl_pol_begin(skb, l3_off, RCL_POL_HOST_OUT, ps) : RCL_POL_DROP;
		if (pol == RCL_POL_NEW && ps)
			rcl_pol_host_point(ps, 0, skb->ingress_ifindex != 0);
		if (pol == RCL_POL_DROP || (pol == RCL_POL_NEW && ps && !rcl_pol_admit(ps, 0))) {
			st->dropped++;
			return TC_ACT_SHOT;
		}
	}
	return TC_ACT_UNSPEC;
}
#endif
