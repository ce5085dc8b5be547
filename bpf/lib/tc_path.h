/* The tc datapath shared by the two tc program sets (bpf/tc.c for workload
 * and data interfaces, bpf/tc_host.c for host endpoints): the interface
 * state, service NAT through conntrack, the policy step of a new flow and
 * the tail call to its verdict. Each set's entry programs call rcl_ingress
 * and rcl_judge with `host` a constant, so each program is verified with
 * one policy path only, and a node without host endpoints never builds the
 * host programs. */
#ifndef RCL_TC_PATH_H
#define RCL_TC_PATH_H
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include "iface_types.h"
#include "tc_maps.h"
#include "nat.h"
#include "reject.h"

#include "policy.h"
#include "masq.h"

/* The interface's state, by the slot its filter carries as classid (see
 * bpf/lib/iface_types.h). None when the slot names another interface: a
 * filter left behind, or a slot the reconciler is about to hand over. */
static __always_inline struct rcl_ifstate *rcl_ifstate_of(struct __sk_buff *skb)
{
	__u32 slot = skb->tc_classid;
	struct rcl_ifstate *st = rcl_ifstate.lookup(&slot);
	if (!st || st->ifindex != skb->ifindex)
		return 0;
	return st;
}

/* A tail-called program's interface state, and in *ps the scratch its
 * caller left (a tail call stays on its CPU): none if either is missing. */
static __always_inline struct rcl_ifstate *rcl_tail_state(struct __sk_buff *skb,
							  struct rcl_pol_scratch **ps)
{
	__u32 zero = 0;
	*ps = rcl_pol_scratch.lookup(&zero);
	return *ps ? rcl_ifstate_of(skb) : 0;
}

/* Where IPv4 starts in an interface's packets: at once on an L3 interface
 * (a tunnel: no link layer), after the Ethernet header on any other. */
static __always_inline __u32 rcl_l3_off(__u32 flags)
{
	return (flags & RCL_IF_L3) && !(flags & RCL_IF_DATA) ? 0 : ETH_HLEN;
}

/* Does a packet from a workload carry a source address the workload may not
 * send from? Calico's anti-spoofing: NAT and policy judge flows by their
 * source, so a pod that sent as another would take that one's verdicts. An
 * interface whose slot holds no entry of its own (not written yet) is not
 * judged. */
static __always_inline int rcl_wep_spoofed(struct __sk_buff *skb, __u32 l3_off)
{
	if (skb->vlan_present || skb->protocol != rcl_htons(ETH_P_IP))
		return rcl_wep_frame_refused(skb); /* (policy.h) */
	__u32 slot = skb->tc_classid;
	struct rcl_wep_src *w = rcl_wep_src.lookup(&slot);
	if (!w || w->ifindex != skb->ifindex)
		return 0;
	/* the source address read in place (no helper call) when the header
	 * is in the linear part, as it is for a pod's packets */
	__u32 saddr;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + l3_off + 16 <= data_end)
		saddr = *(__u32 *)(data + l3_off + 12);
	else if (bpf_skb_load_bytes(skb, l3_off + 12, &saddr, sizeof(saddr)))
		return 1;
	__u32 count = w->count;
#pragma unroll
	for (int i = 0; i < RCL_WEP_NETS; i++) {
		if (i >= count)
			break;
		if ((saddr & w->net[i].mask) == w->net[i].addr)
			return 0;
	}
	return 1;
}

/* bpfEnforceRPF: does a packet that arrived on a host interface (a data or
 * L3 interface, or a host endpoint) carry a source this node would not
 * route back the way it came? The FIB is asked for the reverse path (to the
 * source, from the destination, as an input lookup on the arrival
 * interface): Strict wants the route to leave by that interface, Loose any
 * route to an interface; a source this node owns, or one whose route is a
 * blackhole, unreachable or prohibited, fails both. As the kernel's
 * rp_filter, every packet is checked, not a flow's first only: host traffic
 * keeps no state here. The kernel makes no input lookup on an interface
 * that does not forward (a host protected by host endpoints may forward
 * nothing): there the check is not made and the packet passes, where
 * Calico, on nodes that always forward, drops it; dropping would cut such a
 * host off, its failsafe ports too.
 *
 * The verdicts are remembered per CPU for a second (rcl_rpf_seen): a packet
 * like one just judged (most packets belong to flows) skips the lookup.
 * Direct-mapped by the packet's addresses, protocol and interface; an entry
 * holds all of them and the mode it was judged in, so a collision or a new
 * mode only costs a lookup. A route change reaches the check within the
 * entry's second. The lookup's parameters live in the per-CPU scratch:
 * rcl_tc_ingress has no stack to spare. rcl_rpf_seen: tc_maps.h. */

/* The FIB's answer for the packet whose header is in ps->ip: 1 if it fails
 * the check in `mode`. */
static __always_inline int rcl_rpf_lookup(struct __sk_buff *skb, __u32 mode,
					  struct rcl_pol_scratch *ps)
{
	struct iphdr *ip = &ps->ip;
	struct bpf_fib_lookup *fib = &ps->fib;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = 2; /* AF_INET */
	fib->l4_protocol = ip->protocol;
	fib->ipv4_src = ip->daddr;
	fib->ipv4_dst = ip->saddr;
	fib->ifindex = skb->ifindex;
	int rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return 0; /* no verdict to be had: see above */
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH &&
	    rc != BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return 1;
	return mode == RCL_G_RPF_STRICT && fib->ifindex != skb->ifindex;
}

static __always_inline int rcl_rpf_failed(struct __sk_buff *skb, __u32 flags,
					  struct rcl_pol_scratch *ps)
{
	if (!(flags & (RCL_IF_DATA | RCL_IF_L3 | RCL_IF_HOST_ENDPOINT)) ||
	    (flags & RCL_IF_WORKLOAD) || skb->protocol != rcl_htons(ETH_P_IP) ||
	    rcl_pol_untracked(skb))
		return 0;
	__u32 l3_off = rcl_l3_off(flags);
	struct rcl_globals *g = rcl_globals.lookup(&ps->zero);
	__u32 mode = g ? (g->flags >> RCL_G_RPF_SHIFT) & RCL_G_RPF_MASK : RCL_G_RPF_DISABLED;
	if (mode == RCL_G_RPF_DISABLED)
		return 0;
	struct iphdr *ip = &ps->ip;
	if (rcl_skb_read(skb, l3_off, ip, sizeof(*ip)))
		return 1;
	__u32 ifindex = skb->ifindex;
	__u32 h = ip->saddr ^ (ip->daddr * 0x85ebca6bU) ^ (ifindex * 0xc2b2ae35U) ^ ip->protocol;
	ps->rpf_slot = (h * 0x9e3779b1U) >> 22; /* 10 bits: RCL_RPF_SEEN_SLOTS */
	struct rcl_rpf_seen *seen = rcl_rpf_seen.lookup(&ps->rpf_slot);
	__u64 now = rcl_now();
	if (seen && seen->saddr == ip->saddr && seen->daddr == ip->daddr &&
	    seen->ifindex == ifindex && seen->proto == ip->protocol && seen->mode == mode &&
	    now < seen->until)
		return seen->failed;
	int failed = rcl_rpf_lookup(skb, mode, ps);
	if (seen) {
		seen->saddr = ip->saddr;
		seen->daddr = ip->daddr;
		seen->ifindex = ifindex;
		seen->proto = ip->protocol;
		seen->mode = mode;
		seen->failed = failed;
		seen->until = now + RCL_RPF_SEEN_NS;
	}
	return failed;
}

/* ICMP errors for services without backends are rate-limited per CPU, as the
 * kernel limits its own (net.ipv4.icmp_msgs_per_sec 1000, burst 50): a flood
 * of connection attempts must not become an equal flood of replies. GCRA: the
 * slot holds the theoretical arrival time of the next allowed error. Pinned,
 * so the tc and host sets share one limit per CPU and a new build keeps it
 * (rcl_reject_tat, tc_maps.h). */
#define RCL_REJECT_INTERVAL_NS 1000000ULL /* 1,000 per second */
#define RCL_REJECT_BURST 50
/* ps->masq_back: why rcl_masq_entry runs, and what it told tc ingress */
#define RCL_MASQ_OUT   0 /* a flow NAT marked for masquerade, on its way out */
#define RCL_MASQ_ASKED 1 /* tc ingress asks about what may be a reply */
#define RCL_MASQ_AGAIN 2 /* tc ingress runs again on the packet, after the answer */

static __always_inline int rcl_reject_allowed(void)
{
	__u32 zero = 0;
	__u64 *tat = rcl_reject_tat.lookup(&zero);
	if (!tat)
		return 1;
	__u64 now = bpf_ktime_get_ns();
	__u64 next = *tat > now ? *tat : now;
	if (next - now > (RCL_REJECT_BURST - 1) * RCL_REJECT_INTERVAL_NS)
		return 0;
	*tat = next + RCL_REJECT_INTERVAL_NS;
	return 1;
}

/* Send a NAT reply straight out of the interface the FIB picks, its TTL one
 * less as forwarding leaves it. Its source may now be one of this node's
 * own addresses (NodePort), which the input route check would drop as
 * martian; Calico's datapath forwards these itself too.
 * The header and the lookup's parameters live in the per-CPU scratch, as
 * the reverse-path check's do: rcl_tc_ingress has no stack to spare. */
static __always_inline int rcl_forward_reply(struct __sk_buff *skb, __u32 l3_off,
					     struct rcl_pol_scratch *ps)
{
	struct iphdr *ip = &ps->ip;
	struct bpf_fib_lookup *fib = &ps->fib;

	if (l3_off != ETH_HLEN || bpf_skb_load_bytes(skb, l3_off, ip, sizeof(*ip)))
		return TC_ACT_UNSPEC;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = 2; /* AF_INET */
	fib->l4_protocol = ip->protocol;
	fib->tot_len = rcl_htons(ip->tot_len);
	fib->ipv4_src = ip->saddr;
	fib->ipv4_dst = ip->daddr;
	fib->ifindex = skb->ifindex;
	int rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TC_ACT_UNSPEC; /* let the stack try (and count it) */
	if (ip->ttl <= 1 || rcl_ttl_decrement(skb, l3_off, ip))
		return TC_ACT_UNSPEC;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, fib->dmac, ETH_ALEN, 0) ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, fib->smac, ETH_ALEN, 0))
			return TC_ACT_SHOT;
		return bpf_redirect(fib->ifindex, 0);
	}
	return rcl_redirect_neigh(fib->ifindex, NULL, 0, 0);
}

/* Hairpin: the packet goes back to the pod it came from, out of this very
 * interface, with the link-layer addresses swapped (routing would see a
 * source that is not reachable through this interface). */
static __always_inline int rcl_send_back(struct __sk_buff *skb, __u32 l3_off)
{
	__u8 macs[2 * ETH_ALEN];

	if (l3_off == ETH_HLEN &&
	    (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)) || rcl_swap_macs(skb, macs)))
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

/* The NAT verdict carried out: counted, then the packet forwarded, sent
 * back, rejected or handed on. */
static __always_inline int rcl_ingress_finish(struct __sk_buff *skb, struct rcl_ifstate *st,
					      __u32 l3_off, struct rcl_pol_scratch *ps)
{
	rcl_barrier();
	int verdict = rcl_read_once(ps->verdict);
	if (verdict == RCL_NAT_DNAT || verdict == RCL_NAT_SNAT || verdict == RCL_NAT_HAIRPIN ||
	    verdict == RCL_NAT_RELATED || verdict == RCL_NAT_MASQ)
		st->nat++;
	else if (verdict == RCL_NAT_REJECT || verdict == RCL_NAT_DROP)
		st->dropped++;
	if (verdict == RCL_NAT_SNAT)
		return rcl_forward_reply(skb, l3_off, ps);
	if (verdict == RCL_NAT_HAIRPIN)
		return rcl_send_back(skb, l3_off);
	if (verdict == RCL_NAT_MASQ) {
		/* a program of its own (rcl_masq_entry): its conntrack claims
		 * would not fit this one's verifier budget */
		ps->masq_try = 0;
		ps->masq_back = RCL_MASQ_OUT;
		rcl_tc_jumps.call(skb, RCL_JUMP_MASQ);
		rcl_nat_count(RCL_NS_MASQ_FAILED);
		return TC_ACT_SHOT;
	}
	if (verdict == RCL_NAT_FRAG) {
		/* a program of its own (rcl_frag_entry): a later fragment's
		 * look-up would not fit this one's verifier budget */
		rcl_tc_jumps.call(skb, RCL_JUMP_FRAG);
		rcl_nat_count(RCL_NS_FRAG);
		return TC_ACT_UNSPEC; /* the jump failed: untranslated, as it is */
	}
	if (verdict == RCL_NAT_REJECT) {
		if (!rcl_reject_allowed()) {
			rcl_nat_count(RCL_NS_REJECT_LIMITED);
			return TC_ACT_SHOT;
		}
		/* a program of its own (rcl_reject_entry): the error is built on
		 * a stack this program has no room left on */
		rcl_tc_jumps.call(skb, RCL_JUMP_REJECT);
		return TC_ACT_SHOT; /* the jump failed: no error, the packet dropped */
	}
	return rcl_nat_tc_action(verdict);
}

/* Ingress: packets arriving from the interface (from a pod on a workload
 * interface, from the outside world on a data interface). Service NAT runs
 * here: new flows to a VIP are balanced, replies from backends are rewritten
 * back to the VIP, both through conntrack. `host` (a constant) builds the
 * program for host endpoints: their policy instead of a workload's, so each
 * program is verified with one policy path only. */
static __always_inline int rcl_ingress(struct __sk_buff *skb, const int host)
{
	struct rcl_ifstate *st = rcl_ifstate_of(skb);
	if (!st)
		return TC_ACT_UNSPEC; /* not (yet) ours: never disturb traffic */
	struct rcl_pol_scratch *ps = rcl_pol_scratch_get();
	if (!ps)
		return TC_ACT_UNSPEC;
	/* A host interface's arrivals meet the reverse-path check first (what
	 * an untracked rule allowed in XDP skips it, as it skips all below).
	 * First, while little else is live across its helper call. The answer
	 * passes through the scratch: read back, it is one state to the
	 * verifier whichever way the check went (hit, miss, each mode). */
	ps->verdict = rcl_rpf_failed(skb, st->flags, ps);
	rcl_barrier();
	if (rcl_read_once(ps->verdict)) {
		st->rx_packets++;
		st->rx_bytes += skb->len;
		st->dropped++;
		rcl_nat_count(RCL_NS_RPF_DROPPED);
		return TC_ACT_SHOT;
	}
	__u32 flags = st->flags;
	__u32 len = skb->len;
	__u32 l3_off = rcl_l3_off(flags);
	/* Policy: the pod's egress policy, or the host endpoint's. Conntrack is
	 * asked with the packet as it arrived (its replies go back that way); a
	 * new flow is judged after NAT, on the backend a service sent it to (a
	 * host endpoint's failsafe ports and preDNAT policy: before NAT).
	 *
	 * What policy decided before NAT, and NAT's verdict, pass through the
	 * per-CPU scratch: the verifier then sees one state where values in
	 * registers would make it walk the NAT path once per policy outcome and
	 * the policy path once per NAT outcome (past its instruction limit). */
	const int workload = !host && (flags & RCL_IF_WORKLOAD);
	if (workload && rcl_wep_spoofed(skb, l3_off)) {
		st->rx_packets++;
		st->rx_bytes += len;
		st->dropped++;
		return TC_ACT_SHOT;
	}
	/* What may be a reply to a masqueraded flow (bpf/lib/masq.h) is made a
	 * reply to its client by the masquerade's program, which then runs this
	 * one again from the start (and tells it so in ps->masq_back); if that
	 * program is missing, the packet goes on as it is. */
	if (!workload) {
		if (ps->masq_back == RCL_MASQ_AGAIN) {
			ps->masq_back = RCL_MASQ_OUT;
		} else {
			ps->masq_reply = 0;
			if (rcl_masq_reply_candidate(skb, l3_off)) {
				ps->masq_back = RCL_MASQ_ASKED;
				rcl_tc_jumps.call(skb, RCL_JUMP_MASQ);
				ps->masq_back = RCL_MASQ_OUT; /* (the jump failed) */
			}
		}
	}
	/* Asked again: the same memory, but a pointer fresh to the verifier, so
	 * that its paths through the checks above merge here (the host program
	 * takes a fifth more of its budget without this). */
	ps = rcl_pol_scratch_get();
	if (!ps)
		return TC_ACT_UNSPEC;
	ps->state = RCL_POL_PASS;
	int pol = RCL_POL_PASS;
	if (host) {
		/* a reply to a flow this node masqueraded: allowed with the flow,
		 * where it arrived (its policy state is keyed as it was there) */
		if ((flags & RCL_IF_HOST_ENDPOINT) && !rcl_pol_untracked(skb) &&
		    !rcl_read_once(ps->masq_reply)) {
			pol = rcl_pol_begin(skb, l3_off, RCL_POL_HOST_IN, ps);
			if (pol == RCL_POL_NEW)
				pol = rcl_pol_host_pre(ps);
		}
	} else if (flags & RCL_IF_POLICY) {
		pol = rcl_pol_begin(skb, l3_off, RCL_POL_FROM_POD, ps);
	}
	if (pol == RCL_POL_DROP) {
		st->rx_packets++;
		st->rx_bytes += len;
		st->dropped++;
		return TC_ACT_SHOT;
	}
	ps->state = pol;
	ps->nat_fresh = 0;
	rcl_barrier();
	ps->verdict = rcl_nat_ingress_at(skb, l3_off, workload, &ps->frag_key, &ps->frag_ports,
					 &ps->nat_fresh);
	rcl_barrier();
	st->rx_packets++;
	st->rx_bytes += len;
	/* A flow the pod's policy passed (keyed as the pod sent it, to the
	 * service) that NAT has just balanced afresh (its entries were gone:
	 * the backend it had left the service, or they expired) goes to a
	 * backend its policy never judged: judged there as a new flow is. */
	__u32 state = rcl_read_once(ps->state);
	if (!host && state == RCL_POL_EST && rcl_read_once(ps->nat_fresh))
		state = RCL_POL_NEW;
	if (state == RCL_POL_NEW && ps->verdict != RCL_NAT_REJECT &&
	    ps->verdict != RCL_NAT_DROP) {
		/* A new flow's verdict is a program of its own (rcl_judge): the
		 * verifier walks it once, not once per NAT path. */
		rcl_tc_jumps.call(skb, RCL_JUMP_JUDGE);
		st->dropped++; /* the jump failed: fail closed */
		return TC_ACT_SHOT;
	}
	return rcl_ingress_finish(skb, st, l3_off, ps);
}

/* Tail-called by rcl_ingress for a flow that needs a verdict, with the
 * scratch as rcl_ingress left it (a tail call stays on its CPU): policy
 * judged after NAT, then the NAT verdict carried out. ps->state is what
 * rcl_pol_begin said: RCL_POL_NEW, or RCL_POL_EST for a pod's flow NAT
 * balanced afresh. */
static __always_inline int rcl_judge(struct __sk_buff *skb, const int host)
{
	struct rcl_ifstate *st = rcl_ifstate_of(skb);
	__u32 zero = 0;
	struct rcl_pol_scratch *ps = rcl_pol_scratch.lookup(&zero);
	if (!st || !ps)
		return TC_ACT_SHOT;
	__u32 flags = st->flags;
	__u32 l3_off = rcl_l3_off(flags);
	int verdict = ps->verdict;
	if (verdict == RCL_NAT_DNAT || verdict == RCL_NAT_HAIRPIN || verdict == RCL_NAT_RELATED ||
	    verdict == RCL_NAT_MASQ) {
		/* judged on where NAT sent it: the backend's address and port (an
		 * ICMP error's type and code stay what they were) */
		struct iphdr ip;
		__u16 dport = ps->f.dval;
		if (rcl_skb_read(skb, l3_off, &ip, sizeof(ip)) ||
		    (ip.protocol != IPPROTO_ICMP &&
		     rcl_skb_read(skb, l3_off + ip.ihl * 4 + 2, &dport, sizeof(dport))))
			return TC_ACT_SHOT;
		if (host)
			ps->f.local = ip.daddr;
		else
			ps->f.peer = ip.daddr;
		ps->f.dval = dport;
	}
	int allowed;
	if (host) {
		rcl_pol_host_point(ps, 1, 0);
		allowed = rcl_pol_admit(ps, 0);
	} else {
		struct rcl_globals *g = rcl_globals.lookup(&zero);
		allowed = rcl_pol_admit_wep(ps, rcl_pol_to_host_dropped(skb, ps, g ? g->flags : 0));
		/* a flow of the pod's that NAT sent to a backend its policy
		 * denies (rcl_ingress): its approval goes with it, so that its
		 * next packets are judged too */
		if (!allowed && ps->state == RCL_POL_EST)
			rcl_pol_forget(ps);
	}
	if (!allowed) {
		st->dropped++;
		return TC_ACT_SHOT;
	}
	return rcl_ingress_finish(skb, st, l3_off, ps);
}

/* Tail-called by rcl_ingress_finish for a flow NAT marked for masquerade
 * (its source rewritten and the packet sent on), and by rcl_ingress for
 * what may be a reply to one (made the client's if it is, then the ingress
 * program runs again on it: a tail call stays on its CPU, and nothing else
 * runs there before it). bpf/lib/masq.h. */
static __always_inline int rcl_masq_entry(struct __sk_buff *skb)
{
	struct rcl_ifstate *st = rcl_ifstate_of(skb);
	__u32 zero = 0;
	struct rcl_pol_scratch *ps = rcl_pol_scratch.lookup(&zero);
	if (!st || !ps)
		return TC_ACT_SHOT;
	__u32 l3_off = rcl_l3_off(st->flags);
	__u32 back = ps->masq_back == RCL_MASQ_ASKED;
	/* opaque to clang: knowing it 0 or 1, clang tests it as == 0 in one
	 * place and != 1 in another, and the verifier, which cannot tell it
	 * is 0 or 1, walks paths that take one way in one test and the other
	 * in the next */
	asm volatile("" : "+r"(back));
	__u32 attempt = ps->masq_try;
	__u16 mtu = 0;
	int action = rcl_masq_step(skb, l3_off, back, attempt, &mtu);
	if (back) {
		if (action == RCL_MASQ_NO_REPLY) /* or an ICMP error about such a flow */
			action = rcl_masq_icmp_back(skb, l3_off);
		ps->masq_back = RCL_MASQ_OUT;
		if (action == RCL_MASQ_BROKEN) {
			st->dropped++;
			return TC_ACT_SHOT;
		}
		ps->masq_reply = action == RCL_MASQ_REPLIED;
		ps->masq_back = RCL_MASQ_AGAIN;
		rcl_tc_jumps.call(skb, RCL_JUMP_INGRESS);
		ps->masq_back = RCL_MASQ_OUT;
		st->dropped++; /* the jump failed: the packet may be rewritten already */
		return TC_ACT_SHOT;
	}
	if (action == RCL_MASQ_TOO_BIG) {
		/* as the kernel's forwarding answers: the packet (as the client
		 * sent it) becomes "fragmentation needed", within the rate of
		 * NAT's other errors */
		if (!rcl_reject_allowed()) {
			rcl_nat_count(RCL_NS_REJECT_LIMITED);
			return TC_ACT_SHOT;
		}
		ps->reject_mtu = mtu;
		rcl_tc_jumps.call(skb, RCL_JUMP_REJECT);
		ps->reject_mtu = 0;
		rcl_nat_count(RCL_NS_MASQ_FAILED);
		return TC_ACT_SHOT;
	}
	if (action != RCL_MASQ_RETRY)
		return action;
	/* the port is taken: this program again, with the next one */
	ps->masq_try = attempt + 1;
	rcl_tc_jumps.call(skb, RCL_JUMP_MASQ);
	rcl_nat_count(RCL_NS_MASQ_FAILED);
	return TC_ACT_SHOT;
}

/* Tail-called by rcl_ingress_finish for a later IPv4 fragment, once policy
 * passed it: service NAT by its first fragment's flow (nat.h
 * rcl_nat_fragment), then that verdict carried out. */
static __always_inline int rcl_frag_entry(struct __sk_buff *skb)
{
	struct rcl_pol_scratch *ps;
	struct rcl_ifstate *st = rcl_tail_state(skb, &ps);
	if (!st)
		return TC_ACT_SHOT;
	__u32 l3_off = rcl_l3_off(st->flags);
	ps->verdict = rcl_nat_fragment(skb, l3_off);
	return rcl_ingress_finish(skb, st, l3_off, ps);
}

/* Tail-called by rcl_ingress_finish for a packet NAT rejects (counted
 * there), and by rcl_masq_entry for one too big for the way to its backend:
 * the packet turned into its ICMP error and sent back. */
static __always_inline int rcl_reject_entry(struct __sk_buff *skb)
{
	struct rcl_pol_scratch *ps;
	struct rcl_ifstate *st = rcl_tail_state(skb, &ps);
	if (!st)
		return TC_ACT_SHOT;
	__u16 mtu = ps->reject_mtu;
	ps->reject_mtu = 0;
	return rcl_reject(skb, rcl_l3_off(st->flags), mtu);
}

#endif /* RCL_TC_PATH_H */
