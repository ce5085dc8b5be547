/* Connection tracking for service NAT: one LRU map holding both directions.
 * A forward entry (client -> VIP) says which backend the flow was given; a
 * reverse entry (backend -> client) says which VIP to put back as the source.
 * Entries idle longer than their state's timeout count as misses. */
#ifndef RCL_CONNTRACK_H
#define RCL_CONNTRACK_H

#include <uapi/linux/in.h>
#include "nat_maps.h"

static __always_inline __u64 rcl_ct_timeout_ns(__u8 proto, __u8 flags)
{
	__u32 zero = 0;
	struct rcl_nat_globals *g = rcl_nat_globals.lookup(&zero);
	__u32 s = 0;

	if (proto == IPPROTO_TCP) {
		if (flags & RCL_CT_RST) {
			s = g ? g->tcp_rst_s : 0;
			if (!s)
				s = RCL_CT_DEF_RST_S;
		} else if (flags & RCL_CT_FIN) {
			s = g ? g->tcp_fin_s : 0;
			if (!s)
				s = RCL_CT_DEF_FIN_S;
		} else if (flags & RCL_CT_EST) {
			s = g ? g->tcp_established_s : 0;
			if (!s)
				s = RCL_CT_DEF_ESTABLISHED_S;
		} else {
			s = g ? g->tcp_syn_sent_s : 0;
			if (!s)
				s = RCL_CT_DEF_SYN_SENT_S;
		}
	} else if (proto == IPPROTO_UDP) {
		s = g ? g->udp_s : 0;
		if (!s)
			s = RCL_CT_DEF_UDP_S;
	} else {
		s = g ? g->generic_s : 0;
		if (!s)
			s = RCL_CT_DEF_GENERIC_S;
	}
	return (__u64)s * 1000000000ULL;
}

/* TCP header flags byte (offset 13) -> RCL_CT_* bits this packet contributes. */
static __always_inline __u8 rcl_ct_tcp_flags(__u8 tcpflags)
{
	__u8 f = 0;
	if (tcpflags & 0x02)
		f |= RCL_CT_SYN;
	if (tcpflags & 0x01)
		f |= RCL_CT_FIN;
	if (tcpflags & 0x04)
		f |= RCL_CT_RST;
	return f;
}

/* Live entry for key, or NULL (absent or expired; expired ones are deleted).
 * The clock is read only when there is an entry to judge (*now, if still 0):
 * most packets of a busy node are not service traffic and never need it. */
static __always_inline struct rcl_ct_val *rcl_ct_lookup(struct rcl_ct_key *key, __u64 *now)
{
	struct rcl_ct_val *v = rcl_ct.lookup(key);
	if (!v)
		return 0;
	if (!*now)
		*now = bpf_ktime_get_ns();
	if (*now - v->last_seen_ns > rcl_ct_timeout_ns(key->proto, v->flags)) {
		rcl_ct.delete(key);
		return 0;
	}
	return v;
}

/* Record a new balanced flow: forward entry for the client's 5-tuple and the
 * reverse entry for the backend's reply. Returns 0 or a negative error. */
static __always_inline int rcl_ct_create(struct rcl_ct_key *fwd, __u32 svc_id, __u32 ordinal,
					 __u32 be_ip, __u16 be_port, __u8 flags, __u64 now)
{
	/* Hairpin (the client is the backend): the backend sees the VIP as its
	 * peer, so its replies come back addressed to the VIP, not the client. */
	int hairpin = (flags & RCL_CT_HAIRPIN) != 0;
	struct rcl_ct_val v = {};
	struct rcl_ct_key rev = {};

	v.created_ns = now;
	v.last_seen_ns = now;
	v.svc_id = svc_id;
	v.be_ordinal = ordinal;
	v.orig_ip = fwd->dst;
	v.orig_port = fwd->dport;
	v.be_ip = be_ip;
	v.be_port = be_port;
	v.type = RCL_CT_REVERSE;
	v.flags = flags;

	rev.src = be_ip;
	rev.dst = hairpin ? fwd->dst : fwd->src;
	rev.sport = be_port;
	rev.dport = fwd->sport;
	rev.proto = fwd->proto;
	/* reverse first: a forward entry without its reverse would DNAT replies-less flows */
	if (rcl_ct.update(&rev, &v))
		return -1;
	v.type = RCL_CT_FORWARD;
	if (rcl_ct.update(fwd, &v))
		return -1;
	return 0;
}

#endif
