/* Policy lookups shared by the tc programs (policy.h) and the XDP program:
 * the class and verdict tables, a program's verdict, failsafe ports and this
 * node's own addresses. Nothing here touches a packet or conntrack. */
#ifndef RCL_POLICY_LOOKUP_H
#define RCL_POLICY_LOOKUP_H

#include "policy_maps.h"

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

/* The address class, flat in the number of rules: the address itself in the
 * exact table, then, longest first, each prefix length the program has
 * (`nets`, bit n: /n), as an exact entry of the masked address
 * (RCL_POL_K_NET). Untracked programs have these entries (the XDP program
 * and tc egress ask them). A hash lookup per
 * length the program uses, where the LPM trie's walk grows with its entries
 * (and every program's share the trie). Every length is written into the key
 * whether or not it is asked, so that the verifier's paths through the
 * unrolled loop merge. */
static __always_inline __u32 rcl_pol_net_class(__u32 prog, __u32 nets, __u32 addr)
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

/* A program's verdict once the address class is known: see rcl_pol_decide. */
static __always_inline int rcl_pol_decide_cls(__u32 prog, __u32 aclass, __u8 proto, __u16 dval,
					      __u16 sval, __u32 *rule)
{
	__u32 pflags = 0, sflags = 0;
	struct rcl_pol_cell_key ck = {};
	ck.prog = prog;
	ck.aclass = aclass;
	ck.pclass = (__u16)rcl_pol_class(prog, RCL_POL_K_DPORT, proto, dval, 0, &pflags);
	if (pflags & RCL_POL_F_SPORT)
		ck.sclass = (__u16)rcl_pol_class(prog, RCL_POL_K_SPORT, proto, sval, 0, &sflags);
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

/* A program's verdict: RCL_POL_ALLOW, RCL_POL_DENY or RCL_POL_NOMATCH, and
 * the deciding rule's index in *rule. A program with no table (being
 * removed) denies. peer, dval and sval in network order (dval: ICMP type <<
 * 8 | code). */
static __always_inline int rcl_pol_decide(__u32 prog, __u32 peer, __u8 proto, __u16 dval,
					  __u16 sval, __u32 *rule)
{
	__u32 aflags = 0;
	__u32 aclass = rcl_pol_class(prog, RCL_POL_K_ADDR, 0, 0, peer, &aflags);
	return rcl_pol_decide_cls(prog, aclass, proto, dval, sval, rule);
}

/* Count a packet an untracked rule denied (rcl_untracked_drops). */
static __always_inline void rcl_untracked_count(__u32 slot, __u32 prog, __u32 rule, __u8 dir)
{
	struct rcl_untracked_key k = {};
	k.slot = slot;
	k.prog = prog;
	k.rule = rule;
	k.dir = dir;
	__u64 *n = rcl_untracked_drops.lookup(&k);
	if (n) {
		*n += 1;
	} else {
		__u64 one = 1;
		rcl_untracked_drops.update(&k, &one);
	}
}

/* Is the address one of this node's own? (_be) */
static __always_inline int rcl_is_host_ip(__u32 addr)
{
	return rcl_host_ip.lookup(&addr) != 0;
}

/* Is (protocol, destination port) a failsafe port of this direction for
 * this remote address? Only TCP, UDP and SCTP have failsafe ports. */
static __always_inline int rcl_failsafe_allows(__u8 dir, __u8 proto, __u16 dport, __u32 remote)
{
	struct rcl_failsafe_key k = {};
	k.prefixlen = 64;
	k.dir = dir;
	k.proto = proto;
	k.port = dport;
	k.addr = remote;
	return rcl_failsafe.lookup(&k) != 0;
}

#endif
