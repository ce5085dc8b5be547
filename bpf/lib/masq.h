/* Masquerade: external traffic balanced to a backend on another node.
 *
 * With the client's address kept, the backend would answer the client
 * straight, from its own address, and the client would drop the reply (it
 * talked to a NodePort, load balancer or external IP). As kube-proxy does,
 * such a flow leaves this node from one of its own addresses (the FIB's
 * source toward the backend) and a port of its own, and the backend's
 * replies come back here, where they become replies to the client again
 * before service NAT turns their source back into the service's.
 *
 * Two conntrack entries per flow, in a key space of their own
 * (RCL_CT_KEY_MASQ): MASQ_FWD, keyed by the flow as NAT leaves it (client
 * -> backend), holds the source it was given; MASQ_REV, keyed by the
 * replies (backend -> that source), holds the client. The service's NAT
 * entries stay keyed by the client, as for any other flow.
 *
 * The ports are RCL_MASQ_PORT_MIN and up, above Linux's default ephemeral
 * range (32768-60999): the node's own connections to a backend do not
 * use them, and only packets to these ports are looked up as replies. */
#ifndef RCL_MASQ_H
#define RCL_MASQ_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include "nat.h"
#include "policy.h"

#define RCL_MASQ_PORT_MIN 61000
#define RCL_MASQ_PORTS    4536 /* 61000-65535 */
#define RCL_MASQ_TRIES    4    /* ports tried for a new flow: its hash's, then random ones */
#define RCL_FIB_LOOKUP_SRC (1U << 4) /* the lookup gives the source address too (Linux 6.7) */

/* bcc 0.26 declares this helper with the pre-5.11 argument list; use the
 * kernel's own signature (ifindex, params, plen, flags). */
static long (*rcl_redirect_neigh)(__u32 ifindex, void *params, int plen, __u64 flags) =
	(void *)BPF_FUNC_redirect_neigh;

/* A TCP or UDP packet as masquerade reads it. */
struct rcl_masq_pkt {
	struct iphdr ip;
	__u32 l4_off;
	__u16 sport; /* _be */
	__u16 dport; /* _be */
	__u8 pktflags; /* RCL_CT_SYN/FIN/RST */
};

static __always_inline int rcl_masq_parse(struct __sk_buff *skb, __u32 l3_off,
					  struct rcl_masq_pkt *p)
{
	if (skb->protocol != rcl_htons(ETH_P_IP) || rcl_skb_read(skb, l3_off, &p->ip, sizeof(p->ip)))
		return -1;
	__u8 proto = p->ip.protocol;
	if (p->ip.version != 4 || p->ip.ihl < 5 || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) ||
	    (p->ip.frag_off & rcl_htons(0x3fff)))
		return -1; /* NAT passes fragments untranslated: none is masqueraded */
	p->l4_off = l3_off + p->ip.ihl * 4;
	__u16 ports[2];
	__u8 tcpflags = 0;
	if (rcl_skb_read(skb, p->l4_off, ports, sizeof(ports)) ||
	    (proto == IPPROTO_TCP && rcl_skb_read(skb, p->l4_off + 13, &tcpflags, 1)))
		return -1;
	p->sport = ports[0];
	p->dport = ports[1];
	p->pktflags = rcl_ct_tcp_flags(tcpflags);
	return 0;
}

static __always_inline void rcl_masq_key(struct rcl_ct_key *k, __u32 src, __u32 dst, __u16 sport,
					 __u16 dport, __u8 proto)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->src = src;
	k->dst = dst;
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->pad[0] = RCL_CT_KEY_MASQ;
}

/* Could a packet arriving on a host interface be a reply to a masqueraded
 * flow: TCP or UDP to a port of the masquerade's, or an ICMP error (about
 * what, its quote tells: rcl_masq_icmp_back)? Read in place, without a
 * helper call (every packet of a host interface asks): headers outside the
 * linear data are not asked about (a reply's are in it). */
static __always_inline int rcl_masq_reply_candidate(struct __sk_buff *skb, __u32 l3_off)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (skb->protocol != rcl_htons(ETH_P_IP) || l3_off > ETH_HLEN)
		return 0;
	struct iphdr *ip = data + l3_off;
	if ((void *)(ip + 1) > data_end)
		return 0;
	__u8 proto = ip->protocol;
	if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP) ||
	    (ip->frag_off & rcl_htons(0x3fff)))
		return 0;
	__u32 ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return 0;
	if (proto == IPPROTO_ICMP) { /* an error may be about such a flow */
		__u8 *type = (void *)ip + ihl;
		return (void *)(type + 1) <= data_end && rcl_icmp_is_error(*type);
	}
	__u16 *ports = (void *)ip + ihl;
	if ((void *)(ports + 2) > data_end)
		return 0;
	return rcl_htons(ports[1]) >= RCL_MASQ_PORT_MIN;
}

/* One program for both ways of a masqueraded flow (they share the parse
 * and the look-up of the packet's own entry, and a build compiles them
 * once). Its results: */
#define RCL_MASQ_RETRY    0x100 /* out: the port tried is taken, run again with the next */
#define RCL_MASQ_REPLIED  0x101 /* back: a reply, made the client's */
#define RCL_MASQ_NO_REPLY 0x102 /* back: not a reply to a masqueraded flow */
#define RCL_MASQ_BROKEN   0x103 /* back: the rewrite failed half way (drop) */
#define RCL_MASQ_TOO_BIG  0x104 /* out: too big for the way to the backend, and DF
				 * set: the packet is as the client sent it again */

/* An ICMP error (unreachable, time exceeded, parameter problem) about a
 * masqueraded flow, sent to the address the flow left with (by the
 * backend, or a router on the way): its quote and destination made the
 * client's, as a reply is made the client's; service NAT then turns the
 * quote into what the client sent (rcl_nat_icmp_error), so the client's
 * socket hears of it (Path MTU discovery, a closed UDP port). The flow's
 * entries are not refreshed. RCL_MASQ_REPLIED, _NO_REPLY or _BROKEN. */
static __always_inline int rcl_masq_icmp_back(struct __sk_buff *skb, __u32 l3_off)
{
	struct iphdr ip;
	if (rcl_skb_read(skb, l3_off, &ip, sizeof(ip)) || ip.version != 4 || ip.ihl < 5 ||
	    ip.protocol != IPPROTO_ICMP || (ip.frag_off & rcl_htons(0x3fff)))
		return RCL_MASQ_NO_REPLY;
	__u32 l4_off = l3_off + ip.ihl * 4;
	__u32 q_off = l4_off + 8;
	struct iphdr q;
	struct rcl_quoted_ports qp;
	if (rcl_icmp_error_quote(skb, l4_off, q_off, &q, &qp) || q.saddr != ip.daddr ||
	    rcl_htons(qp.sport) < RCL_MASQ_PORT_MIN)
		return RCL_MASQ_NO_REPLY;
	/* the quote reversed is a reply: the flow's MASQ_REV entry */
	struct rcl_ct_key k;
	struct rcl_ct_hit hit;
	hit.val.type = 0; /* set on every path: a miss leaves the copy unwritten */
	hit.val.orig_ip = 0;
	hit.val.orig_port = 0;
	rcl_masq_key(&k, q.daddr, q.saddr, qp.dport, qp.sport, q.protocol);
	if (!rcl_ct_find_pulled(&k, &hit) || hit.val.type != RCL_CT_MASQ_REV)
		return RCL_MASQ_NO_REPLY;
	__u32 mip = q.saddr;
	__u32 client = hit.val.orig_ip;
	__u16 mport = qp.sport;
	__u16 cport = hit.val.orig_port;
	__u16 qcheck = rcl_csum_replace4(q.check, mip, client);
	/* the quote, the error's checksum over it (no pseudo header), then the
	 * error's destination */
	if (bpf_skb_store_bytes(skb, q_off + offsetof(struct iphdr, saddr), &client, 4, 0) ||
	    bpf_skb_store_bytes(skb, q_off + offsetof(struct iphdr, check), &qcheck, 2, 0) ||
	    bpf_skb_store_bytes(skb, q_off + q.ihl * 4, &cport, 2, 0) ||
	    bpf_l4_csum_replace(skb, l4_off + 2, mip, client, 4) ||
	    bpf_l4_csum_replace(skb, l4_off + 2, q.check, qcheck, 2) ||
	    bpf_l4_csum_replace(skb, l4_off + 2, mport, cport, 2) ||
	    bpf_l3_csum_replace(skb, l3_off + offsetof(struct iphdr, check), mip, client, 4) ||
	    bpf_skb_store_bytes(skb, l3_off + offsetof(struct iphdr, daddr), &client, 4, 0)) {
		rcl_nat_count(RCL_NS_ERROR);
		return RCL_MASQ_BROKEN;
	}
	return RCL_MASQ_REPLIED;
}

/* A forwarded packet's hop, as the kernel's forwarding counts it: its TTL
 * one less (the caller has checked that it is above 1). */
static __always_inline int rcl_ttl_decrement(struct __sk_buff *skb, __u32 l3_off,
					     const struct iphdr *ip)
{
	__u8 old[2] = {ip->ttl, ip->protocol}; /* the checksum's 16-bit word */
	__u8 new[2] = {ip->ttl - 1, ip->protocol};
	__u16 from, to;
	__builtin_memcpy(&from, old, 2);
	__builtin_memcpy(&to, new, 2);
	return bpf_l3_csum_replace(skb, l3_off + offsetof(struct iphdr, check), from, to, 2) ||
	       bpf_skb_store_bytes(skb, l3_off + offsetof(struct iphdr, ttl), &new[0], 1, 0);
}

/* Is a packet leaving through a host endpoint one of a flow this node
 * masquerades: from one of its addresses and a masquerade port, to a
 * backend that answers there (its MASQ_REV entry, in either table during a
 * resize)? */
static __always_inline int rcl_masq_leaving(struct __sk_buff *skb, __u32 l3_off)
{
	struct rcl_masq_pkt p;
	if (rcl_masq_parse(skb, l3_off, &p) || rcl_htons(p.sport) < RCL_MASQ_PORT_MIN ||
	    !rcl_is_host_ip(p.ip.saddr))
		return 0;
	struct rcl_ct_key k;
	struct rcl_ct_hit hit;
	hit.val.type = 0; /* set on every path: a miss leaves the copy unwritten */
	rcl_masq_key(&k, p.ip.daddr, p.ip.saddr, p.dport, p.sport, p.ip.protocol);
	return rcl_ct_find_pulled(&k, &hit) && hit.val.type == RCL_CT_MASQ_REV;
}

/* Claim source port `port` (_be) of `mip` for a new flow `fk` (client ->
 * backend, masquerade key), unless a live flow to that backend holds it
 * (one this very flow claimed before, whose forward entry was lost, is
 * taken over). Both entries are written. 0: claimed; 1: taken, try
 * another; -1: failed. */
static __always_inline int rcl_masq_claim(const struct rcl_ct_key *fk, __u32 mip, __u16 port,
					  __u8 pktflags, __u64 now)
{
	struct rcl_ct_key rk;
	rcl_masq_key(&rk, fk->dst, mip, fk->dport, port, fk->proto);
	__u64 t = now;
	struct rcl_ct_hit h;
	h.val.orig_ip = 0; /* set on every path: a miss leaves the copy unwritten */
	h.val.orig_port = 0;
	if (rcl_ct_lookup(&rk, &t, &h) && (h.val.orig_ip != fk->src || h.val.orig_port != fk->sport))
		return 1;
	struct rcl_ct_val v = {};
	v.created_ns = now;
	v.last_seen_ns = now;
	v.orig_ip = fk->src;
	v.orig_port = fk->sport;
	v.be_ip = fk->dst;
	v.be_port = fk->dport;
	v.type = RCL_CT_MASQ_REV;
	v.flags = pktflags;
	/* both ways claimed before either is written, the replies' first (see
	 * rcl_ct_create) */
	struct rcl_ct_claim rc, fc;
	if (rcl_ct_reserve(&rk, now, &rc))
		return -1;
	int fwd_ok = rcl_ct_reserve(fk, now, &fc) == 0;
	rcl_ct_fill(&rc, rk.proto, &v, now);
	if (!fwd_ok)
		return -1;
	v.type = RCL_CT_MASQ_FWD;
	v.orig_ip = mip;
	v.orig_port = port;
	rcl_ct_fill(&fc, fk->proto, &v, now);
	return 0;
}

/* A packet of a flow NAT marked for masquerade, as its client sent it: its
 * destination the service's again (the flow's NAT entry for its replies
 * holds it), for an ICMP error that quotes it. 0 on success. */
static __always_inline int rcl_masq_undo_dnat(struct __sk_buff *skb, __u32 l3_off,
					      const struct rcl_masq_pkt *p)
{
	struct rcl_ct_key k = {};
	k.src = p->ip.daddr;
	k.dst = p->ip.saddr;
	k.sport = p->dport;
	k.dport = p->sport;
	k.proto = p->ip.protocol;
	__u64 now = 0;
	struct rcl_ct_hit hit;
	hit.val.type = 0; /* set on every path: a miss leaves the copy unwritten */
	hit.val.orig_ip = 0;
	hit.val.orig_port = 0;
	if (!rcl_ct_lookup(&k, &now, &hit) || hit.val.type != RCL_CT_REVERSE)
		return -1;
	return rcl_nat_rewrite(skb, l3_off, p->l4_off, p->ip.protocol, 0, p->ip.daddr,
			       hit.val.orig_ip, p->dport, hit.val.orig_port);
}

/* `back` 0: a packet of a flow NAT marked for masquerade (RCL_NAT_MASQ: it
 * now carries its backend's address), on its way out: its source
 * rewritten to the flow's (claimed on its first packet; `attempt` 0 tries
 * the flow's hash's port, later ones random ports), and sent out of the
 * interface the FIB picks, to the next hop, its TTL one less. Not handed
 * to the stack: a source of this node's own arriving on an interface is
 * dropped there as martian. A tc action, RCL_MASQ_RETRY, or
 * RCL_MASQ_TOO_BIG with the MTU of the way out in *mtu.
 * `back` 1: what may be a backend's reply to such a flow, arriving: its
 * destination rewritten to the client's address and port, the two entries
 * refreshed. RCL_MASQ_REPLIED, _NO_REPLY or _BROKEN. */
static __always_inline int rcl_masq_step(struct __sk_buff *skb, __u32 l3_off, __u32 back,
					 __u32 attempt, __u16 *mtu)
{
	struct rcl_masq_pkt p;
	if (rcl_masq_parse(skb, l3_off, &p))
		return back ? RCL_MASQ_NO_REPLY : TC_ACT_SHOT;
	__u8 proto = p.ip.protocol;
	/* the packet's own entry: the flow as it leaves NAT (client ->
	 * backend) or a reply (backend -> this node's address and port) */
	struct rcl_ct_key fk;
	rcl_masq_key(&fk, p.ip.saddr, p.ip.daddr, p.sport, p.dport, proto);
	__u64 now = 0;
	struct rcl_ct_hit hit;
	hit.way = 0; /* set on every path: a miss leaves them unwritten */
	hit.slot = 0;
	hit.ver = 0;
	hit.val.type = 0;
	int found = rcl_ct_lookup(&fk, &now, &hit);
	if (back) {
		if (!found || hit.val.type != RCL_CT_MASQ_REV)
			return RCL_MASQ_NO_REPLY;
		__u32 client = hit.val.orig_ip;
		__u16 cport = hit.val.orig_port;
		__u8 closing = p.pktflags & (RCL_CT_FIN | RCL_CT_RST);
		if (!(hit.val.flags & RCL_CT_EST) || closing) {
			/* established (or closing) in its leaving direction too */
			struct rcl_ct_key ok;
			struct rcl_ct_hit f;
			rcl_masq_key(&ok, client, p.ip.saddr, cport, p.sport, proto);
			if (rcl_ct_find_pulled(&ok, &f))
				rcl_ct_touch(&f, f.val.last_seen_ns, RCL_CT_EST | closing);
		}
		rcl_ct_touch(&hit, now, p.pktflags | RCL_CT_EST);
		if (rcl_nat_rewrite(skb, l3_off, p.l4_off, proto, 0, p.ip.daddr, client, p.dport,
				    cport)) {
			rcl_nat_count(RCL_NS_ERROR);
			return RCL_MASQ_BROKEN;
		}
		return RCL_MASQ_REPLIED;
	}
	struct bpf_fib_lookup fib = {};
	fib.family = 2; /* AF_INET */
	fib.l4_protocol = proto;
	/* the MTU check: the packet's length against the route's MTU; for a
	 * GSO packet (its header's length is the whole train's) the kernel's
	 * own check of its segments against the device's MTU */
	fib.tot_len = skb->gso_size ? 0 : rcl_htons(p.ip.tot_len);
	fib.ipv4_src = p.ip.saddr;
	fib.ipv4_dst = p.ip.daddr;
	fib.ifindex = skb->ifindex;
	int known = found && hit.val.type == RCL_CT_MASQ_FWD;
	/* a new flow asks the FIB for its source too */
	int rc = bpf_fib_lookup(skb, &fib, sizeof(fib), known ? 0 : RCL_FIB_LOOKUP_SRC);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && (p.ip.frag_off & rcl_htons(0x4000)) &&
	    fib.mtu_result >= 68) {
		*mtu = fib.mtu_result;
		return rcl_masq_undo_dnat(skb, l3_off, &p) ? TC_ACT_SHOT : RCL_MASQ_TOO_BIG;
	}
	__u32 mip = fib.ipv4_src;
	__u16 mport;
	if (known) {
		mip = hit.val.orig_ip;
		mport = hit.val.orig_port;
		rcl_ct_touch(&hit, now, p.pktflags);
	} else {
		__u32 spread = attempt ? bpf_get_prandom_u32() : rcl_ct_flow_hash(&fk);
		mport = rcl_htons(RCL_MASQ_PORT_MIN + (__u32)(((__u64)spread * RCL_MASQ_PORTS) >> 32));
	}
	/* A new flow claims its port; a SYN of a known one writes its pair
	 * afresh (a full bucket evicts one entry, not its pair: without its
	 * replies' entry the flow could never answer). */
	if (!known || (p.pktflags & RCL_CT_SYN)) {
		if (!now)
			now = rcl_now();
		int claimed = -1;
		if ((rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) && mip &&
		    p.ip.ttl > 1)
			claimed = rcl_masq_claim(&fk, mip, mport, p.pktflags, now);
		if (claimed > 0 && !known && attempt + 1 < RCL_MASQ_TRIES)
			return RCL_MASQ_RETRY;
		if (claimed) {
			rcl_nat_count(RCL_NS_MASQ_FAILED);
			return TC_ACT_SHOT;
		}
		if (!known)
			rcl_nat_count(RCL_NS_MASQ_NEW);
	}
	if ((rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) || p.ip.ttl <= 1) {
		/* the route to the backend is gone, or the TTL ran out (the
		 * kernel's forwarding would drop that too) */
		rcl_nat_count(RCL_NS_MASQ_FAILED);
		return TC_ACT_SHOT;
	}
	if (rcl_nat_rewrite(skb, l3_off, p.l4_off, proto, 1, p.ip.saddr, mip, p.sport, mport) ||
	    rcl_ttl_decrement(skb, l3_off, &p.ip)) {
		rcl_nat_count(RCL_NS_ERROR);
		return TC_ACT_SHOT;
	}
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && l3_off == ETH_HLEN) {
		if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0))
			return TC_ACT_SHOT;
		return bpf_redirect(fib.ifindex, 0);
	}
	return rcl_redirect_neigh(fib.ifindex, NULL, 0, 0);
}

#endif
