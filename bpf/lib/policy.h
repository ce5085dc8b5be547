/* Network policy for workload endpoints: a verdict is a few lookups, never a
 * rule walk.
 *
 * The reconciler compiles each endpoint's policy (tiers, profiles) into a
 * program (reconciler/policy_compile.py): the remote address, the protocol
 * and destination port, and (when a rule needs it) the source port each map
 * to a class; the verdict table gives (address class, port class, source
 * class) -> allow or deny and the deciding rule. A single address or port is
 * an exact hash entry, anything wider an LPM entry; the exact table is asked
 * first (an address in it has no longer prefix anywhere), so the usual peer,
 * a pod, costs one hash lookup whatever the number of rules.
 *
 * Stateful: an allowed flow is recorded in the conntrack table the NAT owns,
 * in a key space of its own (RCL_CT_KEY_POLICY), keyed by the packet as the
 * policy point sees it, with a reverse entry for its replies. Each side's
 * approval is a bit: the sender's egress policy (RCL_CT_POL_SRC) and the
 * receiver's ingress policy (RCL_CT_POL_DST), so that two local endpoints of
 * one flow both judge it once. Later packets and replies pass on the entry. */
#ifndef RCL_POLICY_H
#define RCL_POLICY_H

#include <uapi/linux/ip.h>
#include "conntrack.h"
#include "nat.h"
#include "policy_lookup.h"
#include "tc_maps.h"

/* Which way a policy point looks: the pod sends (tc ingress, its egress
 * policy) or receives (tc egress, its ingress policy); or a packet arrives
 * through a host endpoint (tc ingress) or leaves through one (tc egress). */
#define RCL_POL_FROM_POD 1
#define RCL_POL_TO_POD   0
#define RCL_POL_HOST_IN  2
#define RCL_POL_HOST_OUT 3

/* rcl_pol_begin results */
#define RCL_POL_PASS 0 /* not IPv4 (ARP...), or the node's own later fragment to its pod: passes */
#define RCL_POL_EST  1 /* a packet of a flow this side allowed: pass */
#define RCL_POL_NEW  2 /* needs a verdict */
#define RCL_POL_DROP 3

/* The rule index recorded for a flow allowed without a verdict. */
#define RCL_POL_RULE_FORCED 0xfffffffe

static __always_inline void rcl_pol_reverse(const struct rcl_ct_key *k, struct rcl_ct_key *r)
{
	r->src = k->dst;
	r->dst = k->src;
	r->sport = k->dport;
	r->dport = k->sport;
	r->proto = k->proto;
	r->pad[0] = RCL_CT_KEY_POLICY;
}

static __always_inline struct rcl_pol_scratch *rcl_pol_scratch_get(void)
{
	__u32 zero = 0;
	struct rcl_pol_scratch *ps = rcl_pol_scratch.lookup(&zero);
	if (ps) {
		__builtin_memset(&ps->f, 0, sizeof(ps->f));
		ps->now = 0;
		ps->zero = 0;
	}
	return ps;
}

/* An ICMP error travels its flow's way back: the policy key (in ps->key2)
 * of the packet an ICMP error quotes at `off` (its IPv4 header and the
 * first 8 bytes after it, which every error carries), reversed, so that it
 * names the entry a reply to that packet would meet. 0 when it quotes no
 * flow policy tracks, or quotes a packet the error does not go back to:
 * an error goes to the quoted packet's sender (as Linux conntrack's
 * nf_conntrack_inet_error asks), and one a pod sends reports on a packet
 * it received. The outer header in ps->ip is read over: its addresses are
 * in ps->f.key. */
static __always_inline int rcl_pol_quoted_key(struct __sk_buff *skb, __u32 off, int from_pod,
					      struct rcl_pol_scratch *ps)
{
	struct iphdr *q = &ps->ip;
	if (rcl_icmp_quote(skb, off, q, ps->l4, 8))
		return 0;
	if (q->saddr != ps->f.key.dst || (from_pod == RCL_POL_FROM_POD && q->daddr != ps->f.key.src))
		return 0;
	__u16 *l4 = (__u16 *)ps->l4;
	struct rcl_ct_key *k = &ps->key2;
	__builtin_memset(k, 0, sizeof(*k));
	__u8 p = q->protocol;
	k->src = q->daddr;
	k->dst = q->saddr;
	k->proto = p;
	k->pad[0] = RCL_CT_KEY_POLICY;
	if (p == IPPROTO_TCP || p == IPPROTO_UDP || p == 132 || p == 136) {
		k->sport = l4[1];
		k->dport = l4[0];
		return 1;
	}
	if (p == IPPROTO_ICMP && (ps->l4[0] == 8 || ps->l4[0] == 0)) {
		k->sport = l4[2];
		k->dport = l4[2];
		return 1;
	}
	return 0;
}

/* Does the error whose key rcl_pol_quoted_key made pass as its flow's reply
 * would: a live entry this side's approval lets a packet through (the
 * forward entry with this side's, the replies' entry with the other
 * side's, as rcl_pol_look asks)? Then it is related (Path MTU discovery's
 * "fragmentation needed", a closed UDP port's "port unreachable") and
 * passes whatever the rules say of ICMP; the flow's entry is not touched.
 * An error that is not related is judged as its own packet. */
static __always_inline int rcl_pol_related(struct rcl_pol_scratch *ps, __u8 other)
{
	struct rcl_ct_hit hit;
	if (!rcl_ct_lookup(&ps->key2, &ps->now, &hit))
		return 0;
	return (hit.val.type == RCL_CT_POL_FWD && (hit.val.flags & ps->f.side)) ||
	       (hit.val.type == RCL_CT_POL_REV && (hit.val.flags & other));
}

/* What a workload interface carries: untagged IPv4 and ARP alone, both
 * ways (as Calico's workload programs). Any other frame would pass
 * unjudged, and not only as itself: after tc the kernel strips a vid-0 VLAN
 * tag (or two) and delivers what was inside as IPv4 or IPv6, past the
 * pod's policy and anti-spoofing. IPv6 is not policed yet. Asked of every
 * workload's packets, under policy or not: from the pod with the
 * anti-spoofing check (tc_path.h rcl_wep_spoofed), to it in tc egress.
 * 1: drop. */
static __always_inline int rcl_wep_frame_refused(struct __sk_buff *skb)
{
	return skb->vlan_present ||
	       (skb->protocol != rcl_htons(ETH_P_IP) && skb->protocol != rcl_htons(ETH_P_ARP));
}

/* Encapsulation a workload sends: VXLAN (UDP to Felix's vxlanPort) or IP in
 * IP carries a packet of any source to any destination, which a node that
 * decapsulates it delivers past the sender's egress policy and
 * anti-spoofing. Dropped before policy unless Felix allows it
 * (RCL_G_ALLOW_VXLAN, RCL_G_ALLOW_IPIP), as Calico does. Asked by the pod's
 * policy point, with the packet parsed into ps->f (every workload is under
 * policy: RCL_IF_POLICY). 1: drop. */
static __always_inline int rcl_pol_encap_refused(struct rcl_pol_scratch *ps)
{
	__u8 p = ps->f.key.proto;
	if (p != IPPROTO_IPIP && p != IPPROTO_UDP)
		return 0;
	struct rcl_globals *g = rcl_globals.lookup(&ps->zero);
	__u32 gflags = g ? g->flags : 0;
	if (p == IPPROTO_IPIP)
		return !(gflags & RCL_G_ALLOW_IPIP);
	return !(gflags & RCL_G_ALLOW_VXLAN) &&
	       rcl_htons(ps->f.key.dport) == gflags >> RCL_G_VXLAN_PORT_SHIFT;
}

/* Did this node itself send the packet to the pod? A packet the host's
 * stack made was never received: ingress_ifindex 0. One that arrived on an
 * interface (a pod's, a host's, also when our tc ingress redirected it)
 * carries that interface's index, whatever its source says. Then the
 * source must be one of this node's addresses, as in Calico; asked second,
 * so forwarded packets never pay that lookup. The node's traffic to its
 * own workloads is never policed (as Calico: kubelet's probes), yet it is
 * recorded, so the pod's replies pass its egress policy as replies. */
static __always_inline int rcl_pol_sent_by_host(struct __sk_buff *skb, __u32 src)
{
	return skb->ingress_ifindex == 0 && rcl_is_host_ip(src);
}

/* Fragmented IPv4 datagrams. Only the first fragment carries the L4
 * header; the ports a policy point found in it are kept by the datagram's
 * (source, destination, protocol, IP id) in rcl_frag when the fragment
 * passes there, and its later fragments take them from that record: they
 * are then packets of that flow, passed on its conntrack entry alone (never
 * judged as a new flow: no header to judge). One without a record (ahead of
 * its first, or its first was dropped) is dropped, as is one whose flow
 * this side has not approved. Each policy point records the datagram as it
 * sees it (a client's egress before service NAT, a backend's ingress after).
 * Service NAT in tc ingress records every first fragment it reads, passed or
 * not (nat.h rcl_nat_frag_note): a record names a flow and approves nothing. */
#define RCL_POL_FRAG_FIRST 1 /* more fragments follow, offset 0 */
#define RCL_POL_FRAG_LATER 2 /* offset > 0: no L4 header */

static __always_inline struct rcl_frag_key *rcl_pol_frag_key(struct rcl_pol_scratch *ps)
{
	struct rcl_frag_key *k = &ps->frag_key;
	rcl_frag_key_fill(k, ps->f.key.src, ps->f.key.dst, ps->f.ip_id, ps->f.key.proto);
	return k;
}

/* A first fragment that passed: its ports, for the fragments that follow. */
static __always_inline void rcl_pol_frag_note(struct rcl_pol_scratch *ps)
{
	ps->frag_ports.sport = ps->f.key.sport;
	ps->frag_ports.dport = ps->f.key.dport;
	rcl_frag.update(rcl_pol_frag_key(ps), &ps->frag_ports);
}

/* A later fragment's ports, from its first's record, into ps->f.key: 0
 * when there is none. */
static __always_inline int rcl_pol_frag_ports(struct rcl_pol_scratch *ps)
{
	struct rcl_frag_ports *v = rcl_frag.lookup(rcl_pol_frag_key(ps));
	if (!v)
		return 0;
	ps->f.key.sport = v->sport;
	ps->f.key.dport = v->dport;
	ps->f.trackable = 1;
	return 1;
}

/* A new TCP connection on the tuple of one that closed: a SYN without ACK
 * on a flow whose entry saw FIN or RST (as Calico's tcp_recycled). It is a
 * new flow, judged by today's policy, and its entries are written afresh
 * (rcl_pol_admit_flow): a closed flow's approvals are not a standing
 * exemption from a later deny. tcpflags: the packet's TCP flags byte (read
 * with pktflags: only a TCP packet's has RCL_CT_SYN). */
static __always_inline int rcl_pol_recycled(const struct rcl_pol_flow *f, __u8 tcpflags,
					    __u8 entry_flags)
{
	return f->pktflags == RCL_CT_SYN && !(tcpflags & 0x10) &&
	       (entry_flags & (RCL_CT_FIN | RCL_CT_RST));
}

/* An ICMP echo's flow is its id, the same both ways, so a request the other
 * way (from the pinged side, with the id of a ping it answered) has the
 * replies' key: never a reply, it is judged as a new flow (as Linux
 * conntrack, whose ICMP tuple has the type). */
static __always_inline int rcl_pol_echo_request(const struct rcl_pol_flow *f)
{
	return f->key.proto == IPPROTO_ICMP && (rcl_htons(f->dval) >> 8) == 8;
}

/* Parse the packet and look it up in conntrack. l3_off: where IPv4 starts. */
static __always_inline int rcl_pol_look(struct __sk_buff *skb, __u32 l3_off, int from_pod,
					 struct rcl_pol_scratch *ps)
{
	__u64 *now = &ps->now;
	struct rcl_pol_flow *f = &ps->f;
	__u32 slot = skb->tc_classid; /* as rcl_ifstate: the interface's slot */
	int host = from_pod == RCL_POL_HOST_IN || from_pod == RCL_POL_HOST_OUT;
	int to_peer = from_pod == RCL_POL_FROM_POD || from_pod == RCL_POL_HOST_OUT;
	if (skb->protocol == rcl_htons(0x86DD))
		return RCL_POL_DROP; /* IPv6 is not policed yet: never let it through unjudged */
	if (skb->protocol != rcl_htons(ETH_P_IP))
		return RCL_POL_PASS;
	if (host) {
		/* the program is chosen once the packet's local side is known */
		struct rcl_pol_hep *hep = rcl_pol_hep.lookup(&slot);
		if (!hep || hep->ifindex != skb->ifindex)
			return RCL_POL_DROP; /* an endpoint without its policy: fail closed */
		__builtin_memcpy(ps->hprog, hep->prog, sizeof(ps->hprog));
	} else {
		struct rcl_pol_ep *ep = rcl_pol_ep.lookup(&slot);
		if (!ep || ep->ifindex != skb->ifindex)
			return RCL_POL_DROP; /* an endpoint without its policy: fail closed */
		f->prog = from_pod ? ep->prog[1] : ep->prog[0];
	}
	struct iphdr *ip = &ps->ip;
	if (rcl_skb_read(skb, l3_off, ip, sizeof(*ip)) || ip->version != 4 || ip->ihl < 5)
		return RCL_POL_DROP;
	/* A later fragment of the node's own to its pod passes, as its first
	 * does (unjudged, see rcl_pol_sent_by_host); from_pod is constant per
	 * call site: the other programs fold the check away. */
	if ((ip->frag_off & rcl_htons(0x1fff)) && from_pod == RCL_POL_TO_POD &&
	    rcl_pol_sent_by_host(skb, ip->saddr))
		return RCL_POL_PASS;
	__u32 l4_off = l3_off + ip->ihl * 4;
	__u8 p = ip->protocol;
	f->key.src = ip->saddr;
	f->key.dst = ip->daddr;
	f->key.proto = p;
	f->key.pad[0] = RCL_CT_KEY_POLICY;
	f->peer = to_peer ? ip->daddr : ip->saddr;
	f->local = to_peer ? ip->saddr : ip->daddr;
	f->side = host ? RCL_CT_POL_HOST : from_pod ? RCL_CT_POL_SRC : RCL_CT_POL_DST;
	f->ip_id = ip->id;
	__u16 *l4 = (__u16 *)ps->l4;
	if (ip->frag_off & rcl_htons(0x1fff)) {
		f->frag = RCL_POL_FRAG_LATER;
		if (!rcl_pol_frag_ports(ps))
			return RCL_POL_DROP;
	} else if (p == IPPROTO_TCP || p == IPPROTO_UDP || p == 132 || p == 136) {
		if (p == IPPROTO_TCP ? rcl_skb_read(skb, l4_off, ps->l4, 14)
				     : rcl_skb_read(skb, l4_off, ps->l4, 4))
			return RCL_POL_DROP;
		f->key.sport = l4[0];
		f->key.dport = l4[1];
		f->sval = l4[0];
		f->dval = l4[1];
		f->trackable = 1;
		if (p == IPPROTO_TCP)
			f->pktflags = rcl_ct_tcp_flags(ps->l4[13]);
	} else if (p == IPPROTO_ICMP) {
		/* type, code; checksum; echo id */
		if (rcl_skb_read(skb, l4_off, ps->l4, 6))
			return RCL_POL_DROP;
		f->dval = l4[0];
		__u8 type = ps->l4[0];
		if (type == 8 || type == 0) { /* echo request / reply: the id is the flow */
			f->key.sport = l4[2];
			f->key.dport = l4[2];
			f->trackable = 1;
		} else if (rcl_icmp_is_error(type)) {
			/* an error (unreachable, time exceeded, parameter problem):
			 * related to the flow of the packet it quotes, if tracked */
			__u8 other = host ? RCL_CT_POL_HOST
					  : f->side ^ (RCL_CT_POL_SRC | RCL_CT_POL_DST);
			if (!rcl_pol_quoted_key(skb, l4_off + 8, from_pod, ps) ||
			    !rcl_pol_related(ps, other))
				return RCL_POL_NEW;
			if (from_pod != RCL_POL_FROM_POD)
				return RCL_POL_EST;
			/* from a pod: allowed without a verdict, yet judged as new,
			 * so that defaultEndpointToHostAction still drops it when it
			 * goes to this node */
			f->forced = 1;
			return RCL_POL_NEW;
		}
	}
	if (from_pod == RCL_POL_FROM_POD && rcl_pol_encap_refused(ps))
		return RCL_POL_DROP;
	if (!f->trackable)
		return RCL_POL_NEW;
	if (ip->frag_off & rcl_htons(0x2000))
		f->frag = RCL_POL_FRAG_FIRST;

	struct rcl_ct_hit ct, *hit = &ct; /* (hits hold pointers: on the stack, where the verifier sees them) */
	if (!rcl_ct_lookup(&f->key, now, hit))
		return RCL_POL_NEW;
	/* a reply passes on the other side's approval; a host endpoint is one
	 * point that sees both directions, its own approval lets replies through */
	__u8 other = host ? RCL_CT_POL_HOST : f->side ^ (RCL_CT_POL_SRC | RCL_CT_POL_DST);
	if (hit->val.type == RCL_CT_POL_FWD && (hit->val.flags & f->side)) {
		if (rcl_pol_recycled(f, ps->l4[13], hit->val.flags))
			return RCL_POL_NEW;
		rcl_ct_touch(hit, *now, f->pktflags);
		return RCL_POL_EST;
	}
	if (hit->val.type == RCL_CT_POL_REV && (hit->val.flags & other) &&
	    !rcl_pol_echo_request(f)) {
		if (!(hit->val.flags & RCL_CT_EST)) {
			/* the first reply: the flow is established both ways */
			struct rcl_ct_hit fh;
			rcl_pol_reverse(&f->key, &ps->key2);
			if (rcl_ct_find(&ps->key2, &fh))
				rcl_ct_touch(&fh, *now, RCL_CT_EST);
		}
		rcl_ct_touch(hit, *now, f->pktflags | RCL_CT_EST);
		return RCL_POL_EST;
	}
	return RCL_POL_NEW;
}

/* Parse the packet and look it up in conntrack (rcl_pol_look): RCL_POL_*,
 * also left in ps->state (rcl_pol_admit_wep reads it). A later fragment
 * whose flow this side has not passed is dropped, not judged; a first
 * fragment that passes on its flow's entry is recorded. */
static __always_inline int rcl_pol_begin(struct __sk_buff *skb, __u32 l3_off, int from_pod,
					 struct rcl_pol_scratch *ps)
{
	int pol = rcl_pol_look(skb, l3_off, from_pod, ps);
	if (pol == RCL_POL_NEW && ps->f.frag == RCL_POL_FRAG_LATER)
		pol = RCL_POL_DROP;
	if (pol == RCL_POL_EST && ps->f.frag == RCL_POL_FRAG_FIRST)
		rcl_pol_frag_note(ps);
	ps->state = pol;
	return pol;
}

/* A TCP packet at a workload's policy point that opens no connection (no
 * SYN, or SYN with ACK) and that no flow this side approved knows: as
 * Calico's mid-flow miss, it is dropped, never judged nor recorded (an ACK
 * or a SYN-ACK a rule admitted would open two-way state). Only its own
 * flow's entries let it through: a reply rejoins (rcl_pol_rejoin), and a
 * forward packet whose entry alone was evicted rejoins by its replies'.
 * Asked by workload policy points alone (rcl_pol_admit_wep): host endpoints
 * judge such packets as before. */
static __always_inline int rcl_pol_midflow(const struct rcl_pol_scratch *ps)
{
	const struct rcl_pol_flow *f = &ps->f;
	return f->key.proto == IPPROTO_TCP && !f->forced && (ps->l4[13] & 0x12) != 0x02;
}

/* Is a packet that rcl_pol_begin could not pass a reply of a live flow the
 * other side approved? Its own entry is gone while its flow's forward entry
 * lives (a full bucket evicts one entry, not its pair, and the replies'
 * entry idles out on its own), or names no approval of that side. If so it
 * passes as that flow's reply, as it would with the pair whole: 1, and its
 * reply entry is written again, the forward entry's approvals in it (a
 * failed claim only costs the next reply this look-up). Else 0: the packet
 * is judged. `midflow` (rcl_pol_midflow): the same for a forward packet
 * whose entry is gone while its replies' entry names this side's approval;
 * its forward entry is written again. Here, not in rcl_pol_begin: the tc
 * ingress program, inlining that, is the verifier's largest; only packets
 * that need a verdict pay. */
static __always_inline int rcl_pol_rejoin(struct rcl_pol_scratch *ps, int midflow)
{
	struct rcl_pol_flow *f = &ps->f;
	__u8 other = f->side == RCL_CT_POL_HOST ? RCL_CT_POL_HOST
						: f->side ^ (RCL_CT_POL_SRC | RCL_CT_POL_DST);
	struct rcl_ct_hit fwd;
	rcl_pol_reverse(&f->key, &ps->key2);
	if (!rcl_ct_lookup(&ps->key2, &ps->now, &fwd))
		return 0;
	struct rcl_ct_val *v = &ps->val;
	__builtin_memcpy(v, &fwd.val, sizeof(*v));
	if (fwd.val.type == RCL_CT_POL_REV && (fwd.val.flags & f->side) && midflow)
		v->type = RCL_CT_POL_FWD; /* this packet's entry, written again */
	else if (fwd.val.type == RCL_CT_POL_FWD && (fwd.val.flags & other))
		v->type = RCL_CT_POL_REV;
	else
		return 0;
	v->last_seen_ns = ps->now;
	v->flags = (fwd.val.flags & (RCL_CT_POL_SRC | RCL_CT_POL_DST | RCL_CT_POL_HOST)) |
		   f->pktflags | RCL_CT_EST;
	struct rcl_ct_claim c;
	if (!rcl_ct_reserve(&f->key, ps->now, &c))
		rcl_ct_fill(&c, f->key.proto, v, ps->now);
	rcl_ct_touch(&fwd, ps->now, RCL_CT_EST);
	return 1;
}

/* Judge a packet rcl_pol_begin could not pass (a reply of an allowed flow
 * passes without a verdict, rcl_pol_rejoin); record an allowed flow.
 * to_host_dropped: a new flow is dropped before its verdict (the
 * defaultEndpointToHostAction, rcl_pol_to_host_dropped). 1: pass, 0: drop. */
static __always_inline int rcl_pol_admit_flow(struct rcl_pol_scratch *ps, int to_host_dropped)
{
	__u64 *now = &ps->now;
	struct rcl_pol_flow *f = &ps->f;
	__u32 rule = RCL_POL_RULE_FORCED;
	if (f->trackable && !rcl_pol_echo_request(f) && rcl_pol_rejoin(ps, 0))
		return 1;
	if (to_host_dropped)
		return 0;
	if (!f->forced &&
	    rcl_pol_decide(f->prog, f->peer, f->key.proto, f->dval, f->sval, &rule) != RCL_POL_ALLOW)
		return 0;
	if (!f->trackable)
		return 1;
	if (!*now)
		*now = rcl_now();
	struct rcl_ct_hit hit;
	if (rcl_ct_find(&f->key, &hit) &&
	    !(hit.val.type == RCL_CT_POL_FWD && f->pktflags == RCL_CT_SYN &&
	      (hit.val.flags & (RCL_CT_FIN | RCL_CT_RST)))) {
		/* The other side allowed it already: add this side's approval to
		 * the flow and its replies. A packet whose key is some flow's reply
		 * is judged, and leaves that flow alone. A SYN on a closed flow's
		 * entry (rcl_pol_recycled) writes the pair afresh, below: the new
		 * connection starts with this side's approval alone. */
		if (hit.val.type == RCL_CT_POL_FWD) {
			rcl_ct_touch(&hit, *now, f->pktflags | f->side);
			rcl_pol_reverse(&f->key, &ps->key2);
			/* pulled: during a resize the replies' entry may be in the
			 * previous table alone, and they pass on this approval */
			if (rcl_ct_find_pulled(&ps->key2, &hit))
				rcl_ct_touch(&hit, *now, f->side);
		}
		return 1;
	}
	struct rcl_ct_val *v = &ps->val;
	__builtin_memset(v, 0, sizeof(*v));
	v->created_ns = *now;
	v->last_seen_ns = *now;
	v->svc_id = f->prog; /* for debugging: the program that allowed it */
	v->be_ordinal = rule;
	v->type = RCL_CT_POL_REV;
	v->flags = f->side;
	rcl_pol_reverse(&f->key, &ps->key2);
	struct rcl_ct_claim rc, fc;
	if (rcl_ct_reserve(&ps->key2, *now, &rc))
		return 1; /* allowed; only its state is lost (the next packet is judged again) */
	int fwd_ok = rcl_ct_reserve(&f->key, *now, &fc) == 0;
	rcl_ct_fill(&rc, ps->key2.proto, v, *now);
	if (fwd_ok) {
		v->type = RCL_CT_POL_FWD;
		v->flags = f->side | f->pktflags;
		rcl_ct_fill(&fc, f->key.proto, v, *now);
	}
	return 1;
}

/* Remove the flow's pair of entries (the packet's key and its replies'),
 * from both tables during a resize: its next packets are judged. */
static __always_inline void rcl_pol_forget(struct rcl_pol_scratch *ps)
{
	struct rcl_ct_hit hit;
	if (rcl_ct_find(&ps->f.key, &hit))
		rcl_ct_kill(&hit);
	else
		rcl_ct_forget_key(&ps->f.key);
	rcl_pol_reverse(&ps->f.key, &ps->key2);
	if (rcl_ct_find(&ps->key2, &hit))
		rcl_ct_kill(&hit);
	else
		rcl_ct_forget_key(&ps->key2);
}

/* rcl_pol_admit_flow, and an admitted first fragment recorded for the
 * fragments that follow. 1: pass, 0: drop. */
static __always_inline int rcl_pol_admit(struct rcl_pol_scratch *ps, int to_host_dropped)
{
	if (!rcl_pol_admit_flow(ps, to_host_dropped))
		return 0;
	if (ps->f.frag == RCL_POL_FRAG_FIRST)
		rcl_pol_frag_note(ps);
	return 1;
}

/* rcl_pol_admit at a workload's policy point: a TCP mid-flow miss
 * (rcl_pol_midflow) passes only by rejoining its flow, unjudged and
 * unrecorded otherwise. ps->state RCL_POL_EST: a flow this side passed,
 * judged again on the backend service NAT newly sent it to (tc_path.h
 * rcl_ingress): no miss, its entries are there. 1: pass, 0: drop. */
static __always_inline int rcl_pol_admit_wep(struct rcl_pol_scratch *ps, int to_host_dropped)
{
	if (ps->state == RCL_POL_EST || !rcl_pol_midflow(ps))
		return rcl_pol_admit(ps, to_host_dropped);
	if (!rcl_pol_rejoin(ps, 1))
		return 0;
	if (ps->f.frag == RCL_POL_FRAG_FIRST)
		rcl_pol_frag_note(ps);
	return 1;
}

/* A host endpoint's first look at a new arriving flow, before service NAT:
 * a failsafe port to the host passes whatever the policy; otherwise the
 * endpoint's preDNAT program, on the original destination, may deny it.
 * RCL_POL_NEW or RCL_POL_DROP. */
static __always_inline int rcl_pol_host_pre(struct rcl_pol_scratch *ps)
{
	struct rcl_pol_flow *f = &ps->f;
	if (rcl_is_host_ip(f->key.dst) &&
	    rcl_failsafe_allows(RCL_FS_IN, f->key.proto, f->dval, f->peer)) {
		f->forced = 1;
		return RCL_POL_NEW;
	}
	__u32 pre = ps->hprog[RCL_HEP_PRE];
	__u32 rule;
	if (pre && rcl_pol_decide(pre, f->peer, f->key.proto, f->dval, f->sval, &rule) == RCL_POL_DENY)
		return RCL_POL_DROP;
	return RCL_POL_NEW;
}

/* Which of a host endpoint's programs judges a new flow, once its local side
 * (after NAT) is known: the host's own traffic meets the ingress or egress
 * policy, forwarded traffic the applyOnForward policy, and where there is
 * none, the flow passes (and is recorded, so that its replies pass too). A
 * failsafe port from the host passes whatever the policy. `forwarded`: a
 * leaving packet that arrived on some interface, the host's address on it
 * or not (a pod's, masqueraded by natOutgoing's iptables rule). */
static __always_inline void rcl_pol_host_point(struct rcl_pol_scratch *ps, int arriving,
					       int forwarded)
{
	struct rcl_pol_flow *f = &ps->f;
	if (f->forced)
		return;
	int local = !forwarded && rcl_is_host_ip(f->local);
	__u32 which = arriving ? (local ? RCL_HEP_IN : RCL_HEP_FWD_IN)
			       : (local ? RCL_HEP_OUT : RCL_HEP_FWD_OUT);
	__u32 prog = 0;
	if (which < RCL_HEP_PROGS)
		prog = ps->hprog[which];
	f->prog = prog;
	if (!prog || (local && !arriving &&
		      rcl_failsafe_allows(RCL_FS_OUT, f->key.proto, f->dval, f->peer)))
		f->forced = 1;
}

/* Does the packet carry our XDP program's word: allowed by an untracked
 * (doNotTrack) rule, no further policy? */
static __always_inline int rcl_pol_untracked(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *meta = (void *)(long)skb->data_meta;
	if (meta + sizeof(__u32) > data)
		return 0;
	return *(__u32 *)meta == RCL_XDP_META_UNTRACKED;
}

/* A packet leaving through a host endpoint meets its untracked (doNotTrack)
 * egress program before conntrack is asked or written: RCL_POL_DENY (drop;
 * counted by rule), RCL_POL_ALLOW (no further host policy, no state) or
 * RCL_POL_NOMATCH (on to the endpoint's other policy). A failsafe outbound
 * port from the host goes on too (the normal path lets it through). */
static __always_inline int rcl_pol_untracked_out(struct __sk_buff *skb, __u32 l3_off,
						 struct rcl_pol_scratch *ps)
{
	__u32 slot = skb->tc_classid;
	struct rcl_pol_hep *hep = rcl_pol_hep.lookup(&slot);
	if (!hep || hep->ifindex != skb->ifindex || skb->protocol != rcl_htons(ETH_P_IP))
		return RCL_POL_NOMATCH; /* rcl_pol_begin decides these */
	__u32 prog = hep->prog[RCL_HEP_UNTRACKED_OUT];
	__u32 nets = hep->untracked_out_nets;
	if (!prog)
		return RCL_POL_NOMATCH;
	struct iphdr *ip = &ps->ip;
	if (rcl_skb_read(skb, l3_off, ip, sizeof(*ip)) || ip->version != 4 || ip->ihl < 5 ||
	    (ip->frag_off & rcl_htons(0x1fff)))
		return RCL_POL_NOMATCH;
	__u8 p = ip->protocol;
	__u16 *l4 = (__u16 *)ps->l4;
	__u16 dval = 0, sval = 0;
	if (p == IPPROTO_TCP || p == IPPROTO_UDP || p == 132 || p == 136) {
		if (rcl_skb_read(skb, l3_off + ip->ihl * 4, ps->l4, 4))
			return RCL_POL_NOMATCH;
		sval = l4[0];
		dval = l4[1];
	} else if (p == IPPROTO_ICMP) {
		if (rcl_skb_read(skb, l3_off + ip->ihl * 4, ps->l4, 2))
			return RCL_POL_NOMATCH;
		dval = l4[0];
	}
	if (rcl_is_host_ip(ip->saddr) && rcl_failsafe_allows(RCL_FS_OUT, p, dval, ip->daddr))
		return RCL_POL_NOMATCH;
	__u32 rule;
	__u32 aclass = rcl_pol_net_class(prog, nets, ip->daddr);
	int action = rcl_pol_decide_cls(prog, aclass, p, dval, sval, &rule);
	if (action == RCL_POL_DENY)
		rcl_untracked_count(slot, prog, rule, RCL_UNTRACKED_OUT);
	return action;
}

/* Does this node keep a packet from a workload (as it is after NAT: its
 * destination in ps->f.peer) for itself? Its own addresses (rcl_host_ip),
 * and what it delivers locally besides: the limited broadcast, multicast
 * (224.0.0.0/4), and whatever its routes do not forward, as a local
 * subnet's broadcast address: the FIB is asked as the kernel's input route
 * will be, from the workload's interface. Not forwarded is also a
 * destination without a route, or forwarding off: the kernel would drop
 * those, so calling them the host's loses nothing. */
static __always_inline int rcl_pol_to_host(struct __sk_buff *skb, struct rcl_pol_scratch *ps)
{
	__u32 dst = ps->f.peer;
	__u32 host_order = dst;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	host_order = __builtin_bswap32(dst);
#endif
	if (host_order == 0xffffffff || (host_order >> 28) == 0xe || rcl_is_host_ip(dst))
		return 1;
	struct bpf_fib_lookup *fib = &ps->fib;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = 2; /* AF_INET */
	fib->l4_protocol = ps->f.key.proto;
	fib->ipv4_src = ps->f.key.src;
	fib->ipv4_dst = dst;
	fib->ifindex = skb->ifindex;
	int rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	return rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH &&
	       rc != BPF_FIB_LKUP_RET_FRAG_NEEDED && rc != BPF_FIB_LKUP_RET_UNSUPP_LWT;
}

/* The defaultEndpointToHostAction for a new flow from a workload to this
 * node (rcl_pol_to_host): 1 when it is dropped. */
static __always_inline int rcl_pol_to_host_dropped(struct __sk_buff *skb,
						   struct rcl_pol_scratch *ps, __u32 gflags)
{
	return (gflags & RCL_G_EP_TO_HOST_MASK) == RCL_G_EP_TO_HOST_DROP && rcl_pol_to_host(skb, ps);
}

/* Never attached: `reconcile --explain --kernel` runs it through
 * BPF_PROG_TEST_RUN with a crafted packet. cb[0]: the endpoint's program id,
 * cb[1]: 1 when the pod sends (egress policy). Classifies exactly as the
 * datapath does, without touching conntrack. Returns the action in bits
 * 0-7 and the rule index above (0xffffff: no table). */
static __always_inline int rcl_pol_probe(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct rcl_pol_flow f = {};
	if (rcl_skb_read(skb, ETH_HLEN, &ip, sizeof(ip)))
		return 0;
	__u32 l4_off = ETH_HLEN + ip.ihl * 4;
	int from_pod = skb->cb[1] != 0;
	f.prog = skb->cb[0];
	f.key.proto = ip.protocol;
	f.peer = from_pod ? ip.daddr : ip.saddr;
	__u16 l4[2] = {};
	if (ip.protocol != IPPROTO_ICMP && ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP &&
	    ip.protocol != 132 && ip.protocol != 136) {
		l4[0] = 0;
	} else if (rcl_skb_read(skb, l4_off, l4, sizeof(l4))) {
		return 0;
	}
	if (ip.protocol == IPPROTO_ICMP) {
		f.dval = l4[0];
	} else {
		f.sval = l4[0];
		f.dval = l4[1];
	}
	__u32 rule;
	int action = rcl_pol_decide(f.prog, f.peer, f.key.proto, f.dval, f.sval, &rule);
	return action | ((rule & 0xffffff) << 8);
}

#endif
