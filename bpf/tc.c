/* tc clsact entry programs for every interface we manage.
 * Compiled by bcc with -DRCL_MAPS_DIR="<bpffs root>/maps" and map sizes. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include "lib/iface_types.h"

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
	rcl_counters.insert(&ifindex, &zero);
	return rcl_counters.lookup(&ifindex);
}

int rcl_tc_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct rcl_ifstate *st = rcl_ifstate.lookup(&ifindex);
	if (!st)
		return TC_ACT_UNSPEC; /* not (yet) ours: never disturb traffic */
	struct rcl_counters *c = rcl_counters_for(ifindex);
	if (c) {
		c->rx_packets++;
		c->rx_bytes += skb->len;
	}
	return TC_ACT_UNSPEC;
}

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
