/* tc clsact programs for workload and data interfaces, and the programs the
 * reconciler runs through BPF_PROG_TEST_RUN. Compiled by bcc (sources
 * flattened by reconciler/datapath/sources.py) with
 * -DRCL_MAPS_DIR="<bpffs root>/maps" and the map sizes. Host endpoints run
 * bpf/tc_host.c's programs over the same maps. The loader may compile the
 * set in parts side by side: a part leaves out, by -DRCL_SKIP_<name>, the
 * programs another part compiles. */
#include "lib/tc_path.h"

#ifndef RCL_SKIP_rcl_tc_ingress
int rcl_tc_ingress(struct __sk_buff *skb)
{
	return rcl_ingress(skb, 0);
}
#endif

#ifndef RCL_SKIP_rcl_tc_judge
int rcl_tc_judge(struct __sk_buff *skb)
{
	return rcl_judge(skb, 0);
}
#endif

/* Never attached: tail-called by the two above for a packet NAT rejects. */
#ifndef RCL_SKIP_rcl_tc_reject
int rcl_tc_reject(struct __sk_buff *skb)
{
	return rcl_reject_entry(skb);
}
#endif

/* Never attached: tail-called by rcl_tc_ingress and rcl_tc_judge for a
 * flow to masquerade, and by rcl_tc_ingress for what may be its reply. */
#ifndef RCL_SKIP_rcl_tc_masq
int rcl_tc_masq(struct __sk_buff *skb)
{
	return rcl_masq_entry(skb);
}
#endif

/* Never attached: tail-called by the ingress program for a later IPv4
 * fragment (service NAT by its first fragment's flow). */
#ifndef RCL_SKIP_rcl_tc_frag
int rcl_tc_frag(struct __sk_buff *skb)
{
	return rcl_frag_entry(skb);
}
#endif

/* Egress: packets the kernel sends out of the interface (to a pod, or out to
 * the world). To a pod under policy: its ingress policy, on the packet as it
 * arrives (a service flow already carries its backend's address and port);
 * the node's own traffic to it passes unjudged (rcl_pol_sent_by_host). */
#ifndef RCL_SKIP_rcl_tc_egress
int rcl_tc_egress(struct __sk_buff *skb)
{
	struct rcl_ifstate *st = rcl_ifstate_of(skb);
	if (!st)
		return TC_ACT_UNSPEC;
	st->tx_packets++;
	st->tx_bytes += skb->len;
	if (skb->mark == RCL_MARK_OUR_ERROR) { /* the pod's own packet, turned back */
		skb->mark = 0;
		return TC_ACT_UNSPEC;
	}
	if ((st->flags & RCL_IF_WORKLOAD) && rcl_wep_frame_refused(skb)) {
		st->dropped++;
		return TC_ACT_SHOT;
	}
	if (st->flags & RCL_IF_POLICY) {
		struct rcl_pol_scratch *ps = rcl_pol_scratch_get();
		int pol = ps ? rcl_pol_begin(skb, ETH_HLEN, RCL_POL_TO_POD, ps) : RCL_POL_DROP;
		if (pol == RCL_POL_NEW && ps && rcl_pol_sent_by_host(skb, ps->f.key.src))
			ps->f.forced = 1; /* allowed without a verdict, and recorded */
		if (pol == RCL_POL_DROP || (pol == RCL_POL_NEW && ps && !rcl_pol_admit_wep(ps, 0))) {
			st->dropped++;
			return TC_ACT_SHOT;
		}
	}
	return TC_ACT_UNSPEC;
}
#endif

/* Never attached: the policy verdict of a crafted packet, for --explain --kernel. */
#ifndef RCL_SKIP_rcl_pol_test
int rcl_pol_test(struct __sk_buff *skb)
{
	return rcl_pol_probe(skb);
}
#endif

/* Never attached: the reconciler runs it through BPF_PROG_TEST_RUN to remove
 * a conntrack entry (a departed backend's); see rcl_ct_kill_request. */
#ifndef RCL_SKIP_rcl_ct_kill_slot
int rcl_ct_kill_slot(struct __sk_buff *skb)
{
	return rcl_ct_kill_request(skb);
}
#endif

/* Never attached: the reconciler runs it through BPF_PROG_TEST_RUN to carry
 * an entry of the previous conntrack table into this one at the end of a
 * resize; see rcl_ct_adopt_request. */
#ifndef RCL_SKIP_rcl_ct_adopt_slot
int rcl_ct_adopt_slot(struct __sk_buff *skb)
{
	return rcl_ct_adopt_request(skb);
}
#endif
