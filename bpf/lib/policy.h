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
#include "policy_types.h"

#ifndef RCL_POL_EXACT_SIZE
#define RCL_POL_EXACT_SIZE 262144
#endif
#ifndef RCL_POL_LPM_SIZE
#define RCL_POL_LPM_SIZE 65536
#endif
#ifndef RCL_POL_VERDICT_SIZE
#define RCL_POL_VERDICT_SIZE 262144
#endif

BPF_TABLE_PINNED("array", __u32, struct rcl_pol_ep, rcl_pol_ep, RCL_IFSTATE_SIZE,
		 RCL_MAPS_DIR "/rcl_pol_ep");
BPF_TABLE_PINNED("hash", struct rcl_pol_cls_key, struct rcl_pol_cls, rcl_pol_exact,
		 RCL_POL_EXACT_SIZE, RCL_MAPS_DIR "/rcl_pol_exact");
BPF_TABLE_PINNED("lpm_trie", struct rcl_pol_lpm_key, struct rcl_pol_cls, rcl_pol_lpm,
		 RCL_POL_LPM_SIZE, RCL_MAPS_DIR "/rcl_pol_lpm", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct rcl_pol_cell_key, struct rcl_pol_verdict, rcl_pol_verdict,
		 RCL_POL_VERDICT_SIZE, RCL_MAPS_DIR "/rcl_pol_verdict");

/* Which way a policy point looks: the pod sends (tc ingress, its egress
 * policy) or receives (tc egress, its ingress policy). */
#define RCL_POL_FROM_POD 1
#define RCL_POL_TO_POD   0

/* rcl_pol_begin results */
#define RCL_POL_PASS 0 /* not IPv4 (ARP...): policy does not apply */
#define RCL_POL_EST  1 /* a packet of a flow this side allowed: pass */
#define RCL_POL_NEW  2 /* needs a verdict */
#define RCL_POL_DROP 3

/* A packet as policy sees it. */
struct rcl_pol_flow {
	struct rcl_ct_key key; /* conntrack key (policy key space) */
	__u32 peer;            /* _be the remote address */
	__u32 prog;            /* the endpoint's program for this direction */
	__u16 dval;            /* _be destination port, or ICMP type << 8 | code */
	__u16 sval;            /* _be source port */
	__u8 pktflags;         /* RCL_CT_SYN/FIN/RST of this packet */
	__u8 trackable;        /* has a flow: TCP, UDP, SCTP, UDPLite, ICMP echo */
	__u8 side;             /* RCL_CT_POL_SRC (from the pod) or RCL_CT_POL_DST */
	__u8 pad;
};

static __always_inline void rcl_pol_reverse(const struct rcl_ct_key *k, struct rcl_ct_key *r)
{
	r->src = k->dst;
	r->dst = k->src;
	r->sport = k->dport;
	r->dport = k->sport;
	r->proto = k->proto;
	r->pad[0] = RCL_CT_KEY_POLICY;
}

/* A policy point's working state. Per CPU, not on the stack: inlined into
 * the tc programs beside the NAT path, it would not fit in their 512 bytes.
 * A tc program runs to its end on its CPU before the next one starts there. */
struct rcl_pol_scratch {
	struct rcl_pol_flow f;
	struct rcl_ct_key key2;
	struct rcl_ct_val val;
	__u64 now;   /* the clock, once read (0: not yet) */
	__u32 state; /* the caller's: kept here, the verifier's paths merge (see tc.c) */
	__u32 verdict;
	/* Headers are read here, not into the stack: partly written stack
	 * slots differ from path to path and keep the verifier from merging
	 * the paths that follow (the whole NAT path, once per parse outcome). */
	struct iphdr ip;
	__u8 l4[14];
	__u16 pad;
};
BPF_PERCPU_ARRAY(rcl_pol_scratch, struct rcl_pol_scratch, 1);

static __always_inline struct rcl_pol_scratch *rcl_pol_scratch_get(void)
{
	__u32 zero = 0;
	struct rcl_pol_scratch *ps = rcl_pol_scratch.lookup(&zero);
	if (ps) {
		__builtin_memset(&ps->f, 0, sizeof(ps->f));
		ps->now = 0;
	}
	return ps;
}

/* Parse the packet and look it up in conntrack. l3_off: where IPv4 starts. */
static __always_inline int rcl_pol_begin(struct __sk_buff *skb, __u32 l3_off, int from_pod,
					 struct rcl_pol_scratch *ps)
{
	__u64 *now = &ps->now;
	struct rcl_pol_flow *f = &ps->f;
	__u32 slot = skb->tc_classid; /* as rcl_ifstate: the interface's slot */
	if (skb->protocol == rcl_htons(0x86DD))
		return RCL_POL_DROP; /* IPv6 is not policed yet: never let it through unjudged */
	if (skb->protocol != rcl_htons(ETH_P_IP))
		return RCL_POL_PASS;
	struct rcl_pol_ep *ep = rcl_pol_ep.lookup(&slot);
	if (!ep || ep->ifindex != skb->ifindex)
		return RCL_POL_DROP; /* an endpoint without its policy: fail closed */
	f->prog = from_pod ? ep->prog[1] : ep->prog[0];
	struct iphdr *ip = &ps->ip;
	if (rcl_skb_read(skb, l3_off, ip, sizeof(*ip)) || ip->version != 4 || ip->ihl < 5)
		return RCL_POL_DROP;
	if (ip->frag_off & rcl_htons(0x1fff))
		return RCL_POL_DROP; /* a later fragment: no ports to judge */
	__u32 l4_off = l3_off + ip->ihl * 4;
	__u8 p = ip->protocol;
	f->key.src = ip->saddr;
	f->key.dst = ip->daddr;
	f->key.proto = p;
	f->key.pad[0] = RCL_CT_KEY_POLICY;
	f->peer = from_pod ? ip->daddr : ip->saddr;
	f->side = from_pod ? RCL_CT_POL_SRC : RCL_CT_POL_DST;
	__u16 *l4 = (__u16 *)ps->l4;
	if (p == IPPROTO_TCP || p == IPPROTO_UDP || p == 132 || p == 136) {
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
		}
	}
	if (!f->trackable)
		return RCL_POL_NEW;

	struct rcl_ct_hit ct, *hit = &ct; /* (hits hold pointers: on the stack, where the verifier sees them) */
	if (!rcl_ct_lookup(&f->key, now, hit))
		return RCL_POL_NEW;
	__u8 other = f->side ^ (RCL_CT_POL_SRC | RCL_CT_POL_DST);
	if (hit->val.type == RCL_CT_POL_FWD && (hit->val.flags & f->side)) {
		rcl_ct_touch(hit, *now, f->pktflags);
		return RCL_POL_EST;
	}
	if (hit->val.type == RCL_CT_POL_REV && (hit->val.flags & other)) {
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

/* The class of one dimension: the exact table first, then the prefixes. */
static __always_inline __u32 rcl_pol_class(__u32 prog, __u8 kind, __u8 proto, __u16 port,
					   __u32 addr, __u32 *flags)
{
	struct rcl_pol_lpm_key lk = {};
	lk.prefixlen = 96;
	lk.k.prog = prog;
	lk.k.kind = kind;
	lk.k.proto = proto;
	lk.k.port = port;
	lk.k.addr = addr;
	struct rcl_pol_cls *c = rcl_pol_exact.lookup(&lk.k);
	if (!c)
		c = rcl_pol_lpm.lookup(&lk);
	if (!c)
		return 0;
	*flags = c->flags;
	return c->cls;
}

/* The verdict of the flow's program: RCL_POL_ALLOW or RCL_POL_DENY, and the
 * deciding rule's index in *rule. A program with no table (being removed)
 * denies. */
static __always_inline int rcl_pol_decide(const struct rcl_pol_flow *f, __u32 *rule)
{
	__u32 aflags = 0, pflags = 0, sflags = 0;
	struct rcl_pol_cell_key ck = {};
	ck.prog = f->prog;
	ck.aclass = rcl_pol_class(f->prog, RCL_POL_K_ADDR, 0, 0, f->peer, &aflags);
	ck.pclass = (__u16)rcl_pol_class(f->prog, RCL_POL_K_DPORT, f->key.proto, f->dval, 0, &pflags);
	if (pflags & RCL_POL_F_SPORT)
		ck.sclass = (__u16)rcl_pol_class(f->prog, RCL_POL_K_SPORT, f->key.proto, f->sval, 0,
						 &sflags);
	struct rcl_pol_verdict *v = rcl_pol_verdict.lookup(&ck);
	if (!v) {
		ck.aclass = RCL_POL_ANY_CLASS;
		ck.pclass = RCL_POL_ANY_PORT;
		ck.sclass = RCL_POL_ANY_PORT;
		v = rcl_pol_verdict.lookup(&ck);
	}
	if (!v) {
		*rule = 0xffffffff;
		return RCL_POL_DENY;
	}
	*rule = v->rule;
	return v->action;
}

/* Judge a new packet; record an allowed flow. 1: pass, 0: drop. */
static __always_inline int rcl_pol_admit(struct rcl_pol_scratch *ps)
{
	__u64 *now = &ps->now;
	struct rcl_pol_flow *f = &ps->f;
	__u32 rule;
	if (rcl_pol_decide(f, &rule) != RCL_POL_ALLOW)
		return 0;
	if (!f->trackable)
		return 1;
	if (!*now)
		*now = rcl_now();
	struct rcl_ct_hit hit;
	if (rcl_ct_find(&f->key, &hit)) {
		/* The other side allowed it already: add this side's approval to
		 * the flow and its replies. A packet whose key is some flow's reply
		 * is judged, and leaves that flow alone. */
		if (hit.val.type == RCL_CT_POL_FWD) {
			rcl_ct_touch(&hit, *now, f->pktflags | f->side);
			rcl_pol_reverse(&f->key, &ps->key2);
			if (rcl_ct_find(&ps->key2, &hit))
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
	int action = rcl_pol_decide(&f, &rule);
	return action | ((rule & 0xffffff) << 8);
}

#endif
