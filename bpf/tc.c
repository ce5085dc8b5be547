/* tc clsact entry programs for every interface we manage.
 * Compiled by bcc (sources flattened by reconciler/bpf_source.py) with
 * -DRCL_MAPS_DIR="<bpffs root>/maps" and the map sizes. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include "lib/iface_types.h"
#include "lib/nat.h"

#ifndef RCL_IFSTATE_SIZE
#define RCL_IFSTATE_SIZE 1000
#endif

BPF_TABLE_PINNED("hash", __u32, struct rcl_ifstate, rcl_ifstate, RCL_IFSTATE_SIZE,
		 RCL_MAPS_DIR "/rcl_ifstate");
BPF_TABLE_PINNED("percpu_hash", __u32, struct rcl_counters, rcl_counters, RCL_IFSTATE_SIZE,
		 RCL_MAPS_DIR "/rcl_counters");
BPF_TABLE_PINNED("array", __u32, struct rcl_globals, rcl_globals, 1,
		 RCL_MAPS_DIR "/rcl_globals");

static __always_inline struct rcl_counters *rcl_counters_for(__u32 ifindex)
{
	struct rcl_counters *c = rcl_counters.lookup(&ifindex);
	if (c)
		return c;
	struct rcl_counters zero = {};
	rcl_counters.insert(&ifindex, &zero); /* NOEXIST: never reset another CPU's race */
	return rcl_counters.lookup(&ifindex);
}

/* Ingress: packets arriving from the interface (from a pod on a workload
 * interface, from the outside world on a data interface). Service NAT runs
 * here: new flows to a VIP are balanced, replies from backends are rewritten
 * back to the VIP, both through conntrack. */
int rcl_tc_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct rcl_ifstate *st = rcl_ifstate.lookup(&ifindex);
	if (!st)
		return TC_ACT_UNSPEC; /* not (yet) ours: never disturb traffic */
	__u32 flags = st->flags;
	__u32 len = skb->len;
	__u32 l3_off = (flags & RCL_IF_L3) && !(flags & RCL_IF_DATA) ? 0 : ETH_HLEN;
	int verdict = rcl_nat_ingress(skb, l3_off);
	struct rcl_counters *c = rcl_counters_for(ifindex);
	if (c) {
		c->rx_packets++;
		c->rx_bytes += len;
		if (verdict == RCL_NAT_DNAT || verdict == RCL_NAT_SNAT)
			c->nat++;
		else if (verdict == RCL_NAT_REJECT || verdict == RCL_NAT_DROP)
			c->dropped++;
	}
	return rcl_nat_tc_action(verdict);
}

/* Egress: packets the kernel sends out of the interface (to a pod, or out to
 * the world). Counted; policy will hook in here. */
int rcl_tc_egress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct rcl_ifstate *st = rcl_ifstate.lookup(&ifindex);
	if (!st)
		return TC_ACT_UNSPEC;
	struct rcl_counters *c = rcl_counters_for(ifindex);
	if (c) {
		c->tx_packets++;
		c->tx_bytes += skb->len;
	}
	return TC_ACT_UNSPEC;
}
