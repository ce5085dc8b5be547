/* Service load balancing for the tc path (and backend selection shared with the
 * connect-time programs in connect.c).
 *
 * Entry point: rcl_nat_ingress_at(skb, l3_off, inside, fk, fp). It changes
 * destination (forward) or source (reply) address and port only, so
 * backends see the real client;
 * except for an external flow to a backend on another node, which it marks
 * to be masqueraded (RCL_NAT_MASQ, bpf/lib/masq.h). Verdicts are RCL_NAT_*; the entry
 * program maps them with rcl_nat_tc_action() or its own policy. */
#ifndef RCL_NAT_H
#define RCL_NAT_H

#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/pkt_cls.h>
#include "bytes.h"
#include "conntrack.h"

/* Verdicts of rcl_nat_ingress_at(). */
#define RCL_NAT_PASS   0 /* not service traffic (or not IPv4 TCP/UDP): carry on */
#define RCL_NAT_DNAT   1 /* destination rewritten to a backend */
#define RCL_NAT_SNAT   2 /* reply source rewritten back to the VIP */
#define RCL_NAT_REJECT 3 /* service has no usable backend: drop (TC_ACT_SHOT) */
#define RCL_NAT_DROP   4 /* rewrite failed half way (the packet is unusable), or a
			* source outside a load balancer IP's ranges: drop */
#define RCL_NAT_HAIRPIN 5 /* a pod reaching itself through a service, both addresses
			   * rewritten: send it back out of the interface it came in on */
#define RCL_NAT_RELATED 6 /* an ICMP error about a balanced flow's reply, its
			   * destination rewritten to the backend: routed as DNAT is */
#define RCL_NAT_MASQ 7 /* as DNAT, and the flow is masqueraded: an external flow to a
			* backend on another node (bpf/lib/masq.h) */
#define RCL_NAT_FRAG 8 /* a later IPv4 fragment: the fragment program translates it
			* as its first fragment's flow (rcl_nat_fragment) */

/* Backend chosen for a new flow. */
struct rcl_nat_pick {
	__u32 ordinal;
	__u32 ip;   /* _be */
	__u16 port; /* _be */
	__u16 pad;
};

#define RCL_PICK_OK       0
#define RCL_PICK_NO_BE    1
#define RCL_PICK_NO_LOCAL 2

/* Choose a backend for a new flow from client_ip (network order; 0 for
 * connect-time LB), by `spread`: 32 random bits, or a hash of the flow's
 * 5-tuple. Honors ClientIP affinity (re-checked against the backend map, so a
 * removed backend is never reused) and ETP/ITP Local (only ordinals
 * [0, local_count); none local -> RCL_PICK_NO_LOCAL, as Kubernetes drops).
 * A client `inside` the cluster (a pod on this node, the node itself) is
 * not held to externalTrafficPolicy Local: as kube-proxy short-circuits it,
 * it reaches every endpoint of the service. */
static __always_inline int rcl_nat_pick_backend(struct rcl_nat_fe_val *fe, __u32 client_ip,
						__u64 now, __u32 spread, int inside,
						struct rcl_nat_pick *out)
{
	__u32 svc_id = fe->svc_id;
	__u32 n = fe->count;
	__u32 flags = fe->flags;
	__u32 timeout_s = fe->affinity_timeout_s;
	__u32 local_flags = inside ? RCL_FE_ITP_LOCAL : (RCL_FE_ETP_LOCAL | RCL_FE_ITP_LOCAL);
	int local_only = (flags & local_flags) != 0;

	if (n == 0)
		return RCL_PICK_NO_BE;
	if (local_only) {
		n = fe->local_count;
		if (n == 0)
			return RCL_PICK_NO_LOCAL;
	}

	struct rcl_nat_aff_key akey = {};
	akey.client_ip = client_ip;
	akey.svc_id = svc_id;
	if (flags & RCL_FE_AFFINITY) {
		struct rcl_nat_aff_val *a = rcl_nat_aff.lookup(&akey);
		if (a && now - a->ts_ns < (__u64)timeout_s * 1000000000ULL && a->ordinal < n) {
			struct rcl_nat_be_key bk = {};
			bk.svc_id = svc_id;
			bk.ordinal = a->ordinal;
			struct rcl_nat_be_val *b = rcl_nat_be.lookup(&bk);
			if (b && b->ip == a->ip && b->port == a->port) {
				a->ts_ns = now;
				out->ordinal = bk.ordinal;
				out->ip = b->ip;
				out->port = b->port;
				return RCL_PICK_OK;
			}
			rcl_nat_count(RCL_NS_STALE);
		}
	}

	struct rcl_nat_be_key bk = {};
	bk.svc_id = svc_id;
	bk.ordinal = (__u32)(((__u64)spread * n) >> 32); /* spread scaled to [0, n) */
	struct rcl_nat_be_val *b = rcl_nat_be.lookup(&bk);
	if (!b)
		return RCL_PICK_NO_BE; /* count and backend map disagree mid-update */
	out->ordinal = bk.ordinal;
	out->ip = b->ip;
	out->port = b->port;

	if (flags & RCL_FE_AFFINITY) {
		struct rcl_nat_aff_val av = {};
		av.ts_ns = now;
		av.ip = b->ip;
		av.port = b->port;
		av.ordinal = bk.ordinal;
		rcl_nat_aff.update(&akey, &av);
	}
	return RCL_PICK_OK;
}

/* RCL_CT_MASQ for a new flow to masquerade: from outside (not a pod of this
 * node) to a backend on another node (an ordinal past the local ones).
 * Compared on opaque copies and returned opaque: a range or constant that
 * differs by the outcome would keep the verifier from merging the two ways
 * into the rest of the new flow's path. */
static __always_inline __u8 rcl_nat_masq(int inside, const struct rcl_nat_fe_val *fe,
					 const struct rcl_nat_pick *pick, __u32 noise)
{
	__u64 ordinal = rcl_ct_opaque(pick->ordinal, noise);
	__u64 local = rcl_ct_opaque(fe->local_count, noise);
	__u64 outside = rcl_ct_opaque(!inside, noise);
	return (__u8)rcl_ct_opaque(outside && ordinal >= local ? RCL_CT_MASQ : 0, noise);
}

/* RCL_NAT_DNAT, or RCL_NAT_MASQ when `masq` (RCL_CT_MASQ or 0) is set:
 * computed, not branched on, so that the two ways stay one for the
 * verifier. */
static __always_inline int rcl_nat_dnat_verdict(__u32 masq)
{
	return RCL_NAT_DNAT + (masq / RCL_CT_MASQ) * (RCL_NAT_MASQ - RCL_NAT_DNAT);
}

/* Conntrack flags of a new flow. A pod whose service picked itself would get
 * its own address back from outside, which it drops as martian (kube-proxy
 * masquerades these): such a hairpin flow has its source NATed to the VIP. */
static __always_inline __u8 rcl_nat_new_flags(__u8 pktflags, const struct rcl_nat_pick *pick,
					      __u32 client_ip)
{
	return pktflags | (pick->ip == client_ip ? RCL_CT_HAIRPIN : 0);
}

/* RFC 1624: a 16-bit one's complement checksum after one 32-bit word of what
 * it covers changed from `from` to `to`. Byte order does not matter to one's
 * complement sums, so raw (network order) words go in and out as they are. */
static __always_inline __u16 rcl_csum_replace4(__u16 check, __u32 from, __u32 to)
{
	__u32 sum = (__u16)~check;
	sum += (__u16)~(from & 0xffff);
	sum += (__u16)~(from >> 16);
	sum += (to & 0xffff) + (to >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Rewrite one endpoint (source or destination) of an IPv4 TCP/UDP packet and
 * fix the IP and L4 checksums incrementally (the L4 one covers the pseudo
 * header). UDP with checksum 0 stays 0 (BPF_F_MARK_MANGLED_0).
 *
 * The L4 checksum always goes through the helper: only the kernel knows
 * whether the skb carries a partial (offloaded) checksum, which takes the
 * pseudo header's change but not the ports'. Everything else is written
 * straight into the linear packet data (the IPv4 header checksum is never
 * offloaded): each helper call is a call the JIT cannot inline, and a new
 * flow's DNAT would make five of them. A non-linear skb takes the helpers. */
/* Rewrite one IPv4 address and the header's checksum through the helpers
 * (a later fragment's, which has no L4 header; a non-linear skb's). */
static __always_inline int rcl_nat_rewrite_ip(struct __sk_buff *skb, __u32 l3_off, int is_src,
					      __u32 old_ip, __u32 new_ip)
{
	__u32 ip_off = l3_off + (is_src ? offsetof(struct iphdr, saddr) : offsetof(struct iphdr, daddr));
	if (old_ip != new_ip &&
	    (bpf_l3_csum_replace(skb, l3_off + offsetof(struct iphdr, check), old_ip, new_ip, 4) ||
	     bpf_skb_store_bytes(skb, ip_off, &new_ip, 4, 0)))
		return -1;
	return 0;
}

static __always_inline int rcl_nat_rewrite(struct __sk_buff *skb, __u32 l3_off, __u32 l4_off,
					   __u8 proto, int is_src, __u32 old_ip, __u32 new_ip,
					   __u16 old_port, __u16 new_port)
{
	__u32 csum_off = l4_off + (proto == IPPROTO_TCP ? 16 : 6);
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (old_ip != new_ip &&
	    bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip, mangled | BPF_F_PSEUDO_HDR | 4))
		return -1;
	if (old_port != new_port && bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | 2))
		return -1;

	void *data = (void *)(long)skb->data; /* reloaded: the helpers moved it */
	void *data_end = (void *)(long)skb->data_end;
	if (l3_off <= ETH_HLEN && l4_off <= ETH_HLEN + 60) {
		struct iphdr *iph = data + l3_off;
		__u16 *ports = data + l4_off;
		if ((void *)(iph + 1) <= data_end && (void *)(ports + 2) <= data_end) {
			if (old_ip != new_ip) {
				if (is_src)
					iph->saddr = new_ip;
				else
					iph->daddr = new_ip;
				iph->check = rcl_csum_replace4(iph->check, old_ip, new_ip);
			}
			if (old_port != new_port)
				ports[is_src ? 0 : 1] = new_port;
			return 0;
		}
	}
	__u32 port_off = l4_off + (is_src ? 0 : 2);
	if (rcl_nat_rewrite_ip(skb, l3_off, is_src, old_ip, new_ip))
		return -1;
	if (old_port != new_port && bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0))
		return -1;
	return 0;
}

/* Copy len bytes at off out of the packet: straight from the linear data
 * when they are there (no helper call), through bpf_skb_load_bytes when not (a non-linear skb). len must
 * be a constant; offsets past the first 128 bytes always take the helper. */
static __always_inline int rcl_skb_read(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (off <= 128 && data + off + len <= data_end) {
		__builtin_memcpy(to, data + off, len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, to, len);
}

/* ICMP types that quote the packet they report on (RFC 792): destination
 * unreachable, time exceeded, parameter problem. */
#define rcl_icmp_is_error(type) ((type) == 3 || (type) == 11 || (type) == 12)

/* The IPv4 header an ICMP error quotes at `off` into q, and the first len
 * bytes after it (at most 8: all an error must carry) into l4. 0 on
 * success; nonzero when they cannot be read or the quote is not IPv4. */
static __always_inline int rcl_icmp_quote(struct __sk_buff *skb, __u32 off, struct iphdr *q,
					  void *l4, __u32 len)
{
	if (rcl_skb_read(skb, off, q, sizeof(*q)) || q->version != 4 || q->ihl < 5)
		return -1;
	return rcl_skb_read(skb, off + q->ihl * 4, l4, len);
}

/* The ports of the TCP or UDP packet an ICMP error quotes. */
struct rcl_quoted_ports {
	__u16 sport;
	__u16 dport;
};

/* Is the ICMP message at l4_off an error that quotes a TCP or UDP packet
 * (at q_off, 8 bytes on)? 0 if so, with the quote's IPv4 header in q and
 * its ports in qp. */
static __always_inline int rcl_icmp_error_quote(struct __sk_buff *skb, __u32 l4_off,
						__u32 q_off, struct iphdr *q,
						struct rcl_quoted_ports *qp)
{
	__u8 type;
	if (rcl_skb_read(skb, l4_off, &type, 1) || !rcl_icmp_is_error(type))
		return -1;
	if (rcl_icmp_quote(skb, q_off, q, qp, sizeof(*qp)) ||
	    (q->protocol != IPPROTO_TCP && q->protocol != IPPROTO_UDP))
		return -1;
	return 0;
}

/* An ICMP error about a hairpin flow (a pod reaching itself through its
 * service), from the pod's own stack: it reports on a packet it received
 * from the VIP (as the flow's backend, or as its client) and goes to the
 * VIP. What the pod sent that packet's flow as was from its own address to
 * the VIP, so the quote's two addresses swap and the port on the VIP's
 * side becomes the one the pod used (the service's, or the backend's);
 * the error comes from the VIP to the pod, back out of the interface it
 * came in on. Swapping two words changes no checksum: only the port's
 * change is folded into the error's. RCL_NAT_HAIRPIN, or RCL_NAT_PASS for
 * an error the pod did not send to the VIP. */
static __always_inline int rcl_nat_icmp_hairpin(struct __sk_buff *skb, __u32 l3_off,
						__u32 l4_off, __u32 q_off,
						const struct iphdr *ip, struct iphdr *q,
						__u32 q_port, __u16 *port, __u16 to_port)
{
	if (ip->saddr != q->daddr || ip->daddr != q->saddr)
		return RCL_NAT_PASS;
	/* (stored from the quote's own copy, rewritten in place: the program's
	 * stack has no room for more) */
	__u16 from_port = *port;
	*port = to_port;
	if (bpf_skb_store_bytes(skb, l3_off + offsetof(struct iphdr, saddr), &q->saddr, 8, 0))
		goto fail; /* the error: from the VIP, to the pod */
	__u32 pod = q->daddr;
	q->daddr = q->saddr;
	q->saddr = pod;
	if (bpf_skb_store_bytes(skb, q_off + offsetof(struct iphdr, saddr), &q->saddr, 8, 0) ||
	    bpf_skb_store_bytes(skb, q_port, port, 2, 0) ||
	    bpf_l4_csum_replace(skb, l4_off + 2, from_port, to_port, 2))
		goto fail;
	rcl_nat_count(RCL_NS_SNAT);
	return RCL_NAT_HAIRPIN;
fail:
	rcl_nat_count(RCL_NS_ERROR);
	return RCL_NAT_DROP;
}

/* An ICMP error (unreachable, time exceeded, parameter problem) about a
 * balanced flow, rewritten so the host it goes to finds the socket it is
 * for (Path MTU discovery, a closed UDP port). Either way it is found
 * through the flow's entries, which are not touched:
 * - on its way back to the client (it quotes a packet that went to the
 *   backend, through the replies' entry): the quote becomes what the client
 *   sent (destination VIP and port), and the error's source the VIP when
 *   the backend itself sent it. RCL_NAT_SNAT: forwarded as a reply is.
 * - on its way to the backend (the client, or a router on its path, reports
 *   on a reply, which left with the VIP as its source, through the forward
 *   entry): the quote becomes what the backend sent, and the error, sent to
 *   the VIP, goes to the backend. RCL_NAT_RELATED: routed as DNAT is.
 * A hairpin flow's error: rcl_nat_icmp_hairpin. RCL_NAT_PASS for anything
 * else (no such flow, an error to the backend not addressed to the VIP). */
static __always_inline int rcl_nat_icmp_error(struct __sk_buff *skb, __u32 l3_off,
					      const struct iphdr *ip)
{
	__u32 l4_off = l3_off + ip->ihl * 4;
	__u32 q_off = l4_off + 8;
	struct iphdr q;
	struct rcl_quoted_ports qp;
	if (rcl_icmp_error_quote(skb, l4_off, q_off, &q, &qp))
		return RCL_NAT_PASS;
	/* the quote reversed: the replies' entry (backend to client) for a quote
	 * that went to the backend, the forward entry (client to VIP) for a
	 * reply that came from the VIP */
	struct rcl_ct_key key = {};
	key.src = q.daddr;
	key.dst = q.saddr;
	key.sport = qp.dport;
	key.dport = qp.sport;
	key.proto = q.protocol;
	__u64 now = 0;
	struct rcl_ct_hit ct;
	ct.val.type = 0; /* set on every path: a miss leaves the copy unwritten */
	if (!rcl_ct_lookup(&key, &now, &ct))
		return RCL_NAT_PASS;
	int to_backend = ct.val.type == RCL_CT_FORWARD;
	if (!to_backend && ct.val.type != RCL_CT_REVERSE)
		return RCL_NAT_PASS;
	/* what changes: one address and one port of the quote, and the
	 * error's own address on the same side when it is that address */
	__u32 from = to_backend ? q.saddr : q.daddr;
	__u32 to = to_backend ? ct.val.be_ip : ct.val.orig_ip;
	__u16 from_port = to_backend ? qp.sport : qp.dport;
	__u16 to_port = to_backend ? ct.val.be_port : ct.val.orig_port;
	__u32 q_port = q_off + q.ihl * 4 + (to_backend ? 0 : 2); /* after any IP options */
	if (ct.val.flags & RCL_CT_HAIRPIN)
		return rcl_nat_icmp_hairpin(skb, l3_off, l4_off, q_off, ip, &q, q_port,
					    to_backend ? &qp.sport : &qp.dport, to_port);
	__u32 q_addr = q_off + (to_backend ? offsetof(struct iphdr, saddr)
					   : offsetof(struct iphdr, daddr));
	__u32 outer = to_backend ? ip->daddr : ip->saddr;
	__u32 outer_off = l3_off + (to_backend ? offsetof(struct iphdr, daddr)
					       : offsetof(struct iphdr, saddr));
	if (to_backend && outer != from)
		return RCL_NAT_PASS;
	__u16 qcheck = rcl_csum_replace4(q.check, from, to);
	/* the quote, then the error's checksum, which covers it (no pseudo header) */
	if (bpf_skb_store_bytes(skb, q_addr, &to, 4, 0) ||
	    bpf_skb_store_bytes(skb, q_off + offsetof(struct iphdr, check), &qcheck, 2, 0) ||
	    bpf_skb_store_bytes(skb, q_port, &to_port, 2, 0) ||
	    bpf_l4_csum_replace(skb, l4_off + 2, from, to, 4) ||
	    bpf_l4_csum_replace(skb, l4_off + 2, q.check, qcheck, 2) ||
	    bpf_l4_csum_replace(skb, l4_off + 2, from_port, to_port, 2)) {
		rcl_nat_count(RCL_NS_ERROR);
		return RCL_NAT_DROP;
	}
	if (outer == from &&
	    (bpf_l3_csum_replace(skb, l3_off + offsetof(struct iphdr, check), from, to, 4) ||
	     bpf_skb_store_bytes(skb, outer_off, &to, 4, 0))) {
		rcl_nat_count(RCL_NS_ERROR);
		return RCL_NAT_DROP;
	}
	rcl_nat_count(to_backend ? RCL_NS_DNAT_CT : RCL_NS_SNAT);
	return to_backend ? RCL_NAT_RELATED : RCL_NAT_SNAT;
}

/* loadBalancerSourceRanges: may a new flow from `src` (_be) use frontend
 * `fe`? Only frontends the compiler flags are asked; one LPM lookup. A
 * refusal is counted: the caller drops the packet silently, as kube-proxy
 * drops it. */
static __always_inline int rcl_nat_src_allowed(const struct rcl_nat_fe_val *fe, __u32 src)
{
	if (!(fe->flags & RCL_FE_SRC_RANGES))
		return 1;
	struct rcl_nat_src_key k = {};
	k.prefixlen = 64;
	k.svc_id = fe->svc_id;
	k.src = src;
	if (rcl_nat_src.lookup(&k))
		return 1;
	rcl_nat_count(RCL_NS_SRC_DENIED);
	return 0;
}

/* IPv4 fragments of a TCP or UDP datagram. The first carries the ports and
 * is translated as any packet of its flow (the L4 checksum, which covers
 * the whole datagram, takes the same incremental update); its ports are
 * kept in rcl_frag by the datagram's (source, destination, protocol, IP
 * id), as a policy point keeps them (policy.h), before the packet is
 * translated. A later fragment, which has no L4 header, takes them from
 * there and is translated by its flow's conntrack entry: its addresses and
 * the IP header's checksum alone. Noted whatever NAT then does with the
 * first: the record only names a flow, and a later fragment is translated
 * only by a conntrack entry of that flow. */
static __always_inline void rcl_frag_key_fill(struct rcl_frag_key *k, __u32 src, __u32 dst,
					      __u16 id, __u8 proto)
{
	k->src = src;
	k->dst = dst;
	k->id = id;
	k->proto = proto;
	k->pad = 0;
}

static __always_inline void rcl_nat_frag_note(const struct iphdr *ip, __u16 sport, __u16 dport,
					      struct rcl_frag_key *k, struct rcl_frag_ports *v)
{
	k->src = ip->saddr;
	k->dst = ip->daddr;
	k->id = ip->id;
	k->proto = ip->protocol;
	k->pad = 0;
	v->sport = sport;
	v->dport = dport;
	rcl_frag.update(k, v);
}

/* A later fragment (rcl_nat_ingress_at said RCL_NAT_FRAG) translated as its
 * first fragment's flow: RCL_NAT_SNAT, _DNAT or _HAIRPIN as that flow's
 * packets are; RCL_NAT_PASS untouched when its first was not seen here
 * (counted RCL_NS_FRAG) or its flow is not NAT's, or is masqueraded (the
 * masquerade translates no fragment). */
static __always_inline int rcl_nat_fragment(struct __sk_buff *skb, __u32 l3_off)
{
	struct iphdr ip;
	if (rcl_skb_read(skb, l3_off, &ip, sizeof(ip)))
		return RCL_NAT_PASS;
	struct rcl_frag_key fk;
	rcl_frag_key_fill(&fk, ip.saddr, ip.daddr, ip.id, ip.protocol);
	struct rcl_frag_ports *ports = rcl_frag.lookup(&fk);
	if (!ports) {
		rcl_nat_count(RCL_NS_FRAG);
		return RCL_NAT_PASS;
	}
	struct rcl_ct_key key = {};
	key.src = ip.saddr;
	key.dst = ip.daddr;
	key.sport = ports->sport;
	key.dport = ports->dport;
	key.proto = ip.protocol;
	__u64 now = 0;
	struct rcl_ct_hit ct;
	if (!rcl_ct_lookup(&key, &now, &ct))
		return RCL_NAT_PASS;
	int hairpin = (ct.val.flags & RCL_CT_HAIRPIN) != 0;
	if (ct.val.type == RCL_CT_REVERSE) {
		if (rcl_nat_rewrite_ip(skb, l3_off, 1, ip.saddr, ct.val.orig_ip) ||
		    (hairpin && rcl_nat_rewrite_ip(skb, l3_off, 0, ip.daddr, ip.saddr)))
			goto broken;
		rcl_nat_count(RCL_NS_SNAT);
		return hairpin ? RCL_NAT_HAIRPIN : RCL_NAT_SNAT;
	}
	if (ct.val.type != RCL_CT_FORWARD || (ct.val.flags & RCL_CT_MASQ))
		return RCL_NAT_PASS;
	if (rcl_nat_rewrite_ip(skb, l3_off, 0, ip.daddr, ct.val.be_ip) ||
	    (hairpin && rcl_nat_rewrite_ip(skb, l3_off, 1, ip.saddr, ip.daddr)))
		goto broken;
	rcl_nat_count(RCL_NS_DNAT_CT);
	return hairpin ? RCL_NAT_HAIRPIN : RCL_NAT_DNAT;
broken:
	rcl_nat_count(RCL_NS_ERROR);
	return RCL_NAT_DROP;
}

/* Service NAT for a packet entering from an interface. l3_off is where the IPv4
 * header starts: ETH_HLEN on Ethernet devices, 0 on L3 devices; `inside`: the
 * interface is a workload's (see rcl_nat_pick_backend); fk, fp: room for a
 * first fragment's record, in the caller's per-CPU scratch (a key on the
 * stack would cost the tc ingress program's verifier budget); *fresh is set
 * to 1 when a backend is picked for a flow NAT did not know (a new flow to
 * NAT, whatever policy knows of it), and left as it is otherwise. Returns RCL_NAT_*.
 * A later IPv4 fragment is RCL_NAT_FRAG (rcl_nat_fragment); packets with
 * unreadable headers pass untouched. */
static __always_inline int rcl_nat_ingress_at(struct __sk_buff *skb, __u32 l3_off, int inside,
					      struct rcl_frag_key *fk, struct rcl_frag_ports *fp,
					      __u32 *fresh)
{
	struct iphdr ip;
	struct {
		__u16 sport;
		__u16 dport;
	} ports;
	__u8 tcpflags = 0;

	if (skb->protocol != rcl_htons(ETH_P_IP))
		return RCL_NAT_PASS;
	if (rcl_skb_read(skb, l3_off, &ip, sizeof(ip)))
		return RCL_NAT_PASS;
	if (ip.version != 4 || ip.ihl < 5)
		return RCL_NAT_PASS;
	if (ip.protocol == IPPROTO_ICMP && !(ip.frag_off & rcl_htons(0x3fff)))
		return rcl_nat_icmp_error(skb, l3_off, &ip);
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
		return RCL_NAT_PASS;
	if (ip.frag_off & rcl_htons(0x1fff))
		return RCL_NAT_FRAG;
	__u32 l4_off = l3_off + ip.ihl * 4;
	if (rcl_skb_read(skb, l4_off, &ports, sizeof(ports)))
		return RCL_NAT_PASS;
	if (ip.frag_off & rcl_htons(0x2000))
		rcl_nat_frag_note(&ip, ports.sport, ports.dport, fk, fp);
	if (ip.protocol == IPPROTO_TCP && rcl_skb_read(skb, l4_off + 13, &tcpflags, 1))
		return RCL_NAT_PASS;

	__u8 pktflags = ip.protocol == IPPROTO_TCP ? rcl_ct_tcp_flags(tcpflags) : 0;
	__u64 now = 0; /* read when first needed */
	struct rcl_ct_key key = {};
	key.src = ip.saddr;
	key.dst = ip.daddr;
	key.sport = ports.sport;
	key.dport = ports.dport;
	key.proto = ip.protocol;

	/* A TCP SYN almost always opens a new flow. For one to a VIP the backend is
	 * chosen before the conntrack lookup, and the reverse entry's bucket is
	 * loaded at once: the forward and the reverse bucket, each a cache miss in
	 * a table of megabytes, are then fetched together instead of one after the
	 * other. If the flow exists after all (a retransmitted SYN), its entry
	 * wins and the choice is dropped; only a ClientIP affinity entry may have
	 * been refreshed or, if it had expired, set to the dropped choice. */
	struct rcl_nat_fe_key fek = {};
	fek.vip = ip.daddr;
	fek.port = ports.dport;
	fek.proto = ip.protocol;
	struct rcl_nat_fe_val *fe = 0;
	struct rcl_nat_pick pick = {};
	int picked = RCL_PICK_NO_BE;
	int syn = ip.protocol == IPPROTO_TCP && (tcpflags & 0x12) == 0x02;
	if (syn) {
		fe = rcl_nat_fe.lookup(&fek);
		if (fe && !rcl_nat_src_allowed(fe, ip.saddr))
			return RCL_NAT_DROP;
		if (fe) {
			now = rcl_now();
			picked = rcl_nat_pick_backend(fe, ip.saddr, now, rcl_ct_flow_hash(&key),
						      inside, &pick);
			if (picked == RCL_PICK_OK)
				rcl_ct_warm(&key, pick.ip, pick.port,
					    rcl_nat_new_flags(pktflags, &pick, ip.saddr));
		}
	}

	struct rcl_ct_hit ct;
	ct.val.type = 0; /* set on every path: a miss leaves the copy unwritten */
	int found = rcl_ct_lookup(&key, &now, &ct);
	if (found && ct.val.type == RCL_CT_REVERSE) {
		__u32 vip = ct.val.orig_ip;
		__u16 vport = ct.val.orig_port;
		int hairpin = (ct.val.flags & RCL_CT_HAIRPIN) != 0;
		struct rcl_ct_key fk = {};
		fk.src = hairpin ? ip.saddr : ip.daddr; /* the client is the backend itself */
		fk.dst = vip;
		fk.sport = ports.dport;
		fk.dport = vport;
		fk.proto = ip.protocol;
		struct rcl_ct_hit f;
		f.val.flags = 0; /* set on every path: a miss leaves the copy unwritten */
		if (!rcl_ct_find_pulled(&fk, &f) ||
		    ((pktflags & RCL_CT_SYN) && (f.val.flags & (RCL_CT_FIN | RCL_CT_RST)))) {
			/* The NATed flow is gone (evicted or cleaned), or it is over
			 * and this is the SYN-ACK of a new connection on its tuple
			 * (one through the VIP would have restarted the forward
			 * entry): a client port that talked to the VIP now talks to
			 * the backend straight, and the new programs of a resize
			 * still hold the entry an old program retired. This reply
			 * belongs to some other flow now. Never rewrite it. */
			rcl_ct_kill(&ct);
			rcl_nat_count(RCL_NS_STALE);
			return RCL_NAT_PASS;
		}
		/* a reply means the forward direction is established too */
		rcl_ct_touch(&f, f.val.last_seen_ns, RCL_CT_EST | (pktflags & (RCL_CT_FIN | RCL_CT_RST)));
		rcl_ct_touch(&ct, now, pktflags | RCL_CT_EST);
		if (rcl_nat_rewrite(skb, l3_off, l4_off, ip.protocol, 1, ip.saddr, vip,
				    ports.sport, vport) ||
		    (hairpin && rcl_nat_rewrite(skb, l3_off, l4_off, ip.protocol, 0, ip.daddr,
						ip.saddr, ports.dport, ports.dport))) {
			rcl_nat_count(RCL_NS_ERROR);
			return RCL_NAT_DROP;
		}
		rcl_nat_count(RCL_NS_SNAT);
		return hairpin ? RCL_NAT_HAIRPIN : RCL_NAT_SNAT;
	}
	__u32 svc_id = 0;
	__u64 counted = RCL_NS_DNAT_NEW; /* what the new flow path counts on success */
	int renew = found && ct.val.type == RCL_CT_FORWARD && syn;
	__u8 masq = 0; /* RCL_CT_MASQ for a flow to masquerade */
	if (found && ct.val.type == RCL_CT_FORWARD && !syn) {
		/* Trust the entry: the backend it names stays the flow's backend even
		 * when ordinals shift because another backend left. Entries of
		 * departed backends are removed by the reconciler when it removes
		 * the backend (reconciler/apply/conntrack_gc.py), or expire. */
		__u32 be_ip = ct.val.be_ip;
		__u16 be_port = ct.val.be_port;
		rcl_ct_touch(&ct, now, pktflags);
		int hairpin = (ct.val.flags & RCL_CT_HAIRPIN) != 0;
		if (rcl_nat_rewrite(skb, l3_off, l4_off, ip.protocol, 0, ip.daddr, be_ip,
				    ports.dport, be_port) ||
		    (hairpin && rcl_nat_rewrite(skb, l3_off, l4_off, ip.protocol, 1, ip.saddr,
						ip.daddr, ports.sport, ports.sport))) {
			rcl_nat_count(RCL_NS_ERROR);
			return RCL_NAT_DROP;
		}
		rcl_nat_count(RCL_NS_DNAT_CT);
		if (hairpin)
			return RCL_NAT_HAIRPIN;
		return rcl_nat_dnat_verdict(ct.val.flags & RCL_CT_MASQ);
	}
	if (renew) {
		/* A SYN of a recorded flow: a retransmit, or a new connection on
		 * the tuple of one that closed. It keeps the entry's backend (the
		 * choice made above is dropped), and both entries are written
		 * afresh: a full bucket evicts one entry, not its flow's pair, and
		 * a forward entry whose reverse is gone would send every retry to
		 * a backend whose replies are never rewritten. The new connection
		 * starts from its SYN's state, not the closed one's. */
		pick.ordinal = ct.val.be_ordinal;
		pick.ip = ct.val.be_ip;
		pick.port = ct.val.be_port;
		svc_id = ct.val.svc_id;
		counted = RCL_NS_DNAT_CT;
		masq = (__u8)rcl_ct_opaque(ct.val.flags & RCL_CT_MASQ, key.src);
	} else {
		if (!syn)
			fe = rcl_nat_fe.lookup(&fek);
		if (!fe) {
			/* A new flow straight to an address (not a service). If this
			 * client port talked to a VIP that was balanced to this very
			 * address and port, that flow's reverse entry would rewrite our
			 * replies to the VIP: the two cannot coexist (same 4-tuple at
			 * the backend), so the old one is over. Retire its reverse
			 * entry, from both tables during a resize: where the old
			 * programs wrote the flow, the old table alone holds it, and
			 * a UDP reply has no SYN-ACK to catch it. */
			if (syn || ip.protocol == IPPROTO_UDP) {
				struct rcl_ct_key rk = {};
				rk.src = ip.daddr;
				rk.dst = ip.saddr;
				rk.sport = ports.dport;
				rk.dport = ports.sport;
				rk.proto = ip.protocol;
				struct rcl_ct_hit stale;
				if (rcl_ct_find(&rk, &stale))
					rcl_ct_kill(&stale); /* and its copy there */
				else
					rcl_ct_forget_key(&rk);
			}
			return RCL_NAT_PASS;
		}
		if (!syn) {
			if (!rcl_nat_src_allowed(fe, ip.saddr))
				return RCL_NAT_DROP;
			if (!now)
				now = rcl_now();
			picked = rcl_nat_pick_backend(fe, ip.saddr, now, rcl_ct_flow_hash(&key),
						      inside, &pick);
		}
		if (picked != RCL_PICK_OK) {
			rcl_nat_count(picked == RCL_PICK_NO_LOCAL ? RCL_NS_REJECT_NOLOCAL
								  : RCL_NS_REJECT_NOBE);
			return RCL_NAT_REJECT;
		}
		svc_id = fe->svc_id;
		*fresh = 1;
		/* From outside (not a pod of this node) to a backend elsewhere:
		 * masqueraded, so that the replies come back through this node */
		masq = rcl_nat_masq(inside, fe, &pick, key.src);
	}
	__u8 ctflags = rcl_nat_new_flags(pktflags, &pick, ip.saddr);
	int hairpin = (ctflags & RCL_CT_HAIRPIN) != 0;
	/* The rewrite comes before the conntrack writes: it overlaps the reverse
	 * bucket's cache miss (for a SYN, already under way). A failure of either
	 * drops the packet (the client sends it again). */
	if (!syn)
		rcl_ct_warm(&key, pick.ip, pick.port, ctflags);
	if (rcl_nat_rewrite(skb, l3_off, l4_off, ip.protocol, 0, ip.daddr, pick.ip,
			    ports.dport, pick.port) ||
	    (hairpin && rcl_nat_rewrite(skb, l3_off, l4_off, ip.protocol, 1, ip.saddr, ip.daddr,
					ports.sport, ports.sport)) ||
	    rcl_ct_create(&key, svc_id, pick.ordinal, pick.ip, pick.port, ctflags, masq, now)) {
		rcl_nat_count(RCL_NS_ERROR);
		return RCL_NAT_DROP;
	}
	/* (opaque: a constant per branch would keep the verifier from merging
	 * the two ways into this path, and it would walk the rest twice) */
	rcl_nat_count((__u32)rcl_ct_opaque(counted, key.src));
	if (hairpin)
		return RCL_NAT_HAIRPIN;
	return rcl_nat_dnat_verdict(masq);
}

/* rcl_nat_ingress_at with the fragment record on the stack, for an entry
 * program without scratch memory of its own. */
static __always_inline int rcl_nat_ingress(struct __sk_buff *skb, __u32 l3_off, int inside)
{
	struct rcl_frag_key fk;
	struct rcl_frag_ports fp;
	__u32 fresh;
	return rcl_nat_ingress_at(skb, l3_off, inside, &fk, &fp, &fresh);
}

/* Default mapping of a verdict to a tc action for entry programs. */
static __always_inline int rcl_nat_tc_action(int verdict)
{
	if (verdict == RCL_NAT_REJECT || verdict == RCL_NAT_DROP)
		return TC_ACT_SHOT;
	return TC_ACT_UNSPEC;
}

#endif
