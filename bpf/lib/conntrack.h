/* Connection tracking for service NAT: a hash table of our own, in an array.
 *
 * A forward entry (client -> VIP) says which backend the flow was given; a
 * reverse entry (backend -> client) says which VIP to put back as the source.
 * A new flow writes both. In a kernel hash map each write is a helper call
 * that takes a bucket lock and allocates: 350-450 ns on this kernel, most of
 * a first packet. Here a slot is claimed with one compare-and-swap and then
 * written with plain stores, on memory the JIT reaches without a call.
 *
 * Layout: RCL_CT_SIZE slots of 64 bytes in buckets of RCL_CT_WAYS. A key
 * hashes to one bucket (rcl_ct_bucket, mirrored by reconciler/ct_table.py).
 * Each slot carries a version word, a seqlock:
 *   0     never used
 *   odd   being written: readers skip it, writers leave it alone
 *   even  stable: a reader copies key and value, then re-reads the version;
 *         if it moved, the copy is thrown away.
 * Expiry is lazy: an entry idle longer than its state's timeout is a miss,
 * and its slot is free for the next flow of its bucket. A full bucket gives
 * a new flow the slot of its least recently seen entry (counted as
 * RCL_NS_CT_EVICTED; size bpfMapSizeConntrack well above the live flows).
 * Entries are removed by making them dead (type 0) through the same claim,
 * from the datapath or from the reconciler (rcl_ct_kill via BPF_PROG_TEST_RUN).
 *
 * Ordering: the reader's data loads must complete before its second version
 * load, and the writer's stores before its publishing store. Both rely on
 * x86 (this project's target) keeping loads in order with loads and stores
 * with stores; a compiler barrier keeps the compiler from moving them. The
 * publish is a plain store, not a locked add: the slot is ours while its
 * version is odd, and a locked instruction is a full barrier (it drains the
 * store buffer) that nothing here needs. */
#ifndef RCL_CONNTRACK_H
#define RCL_CONNTRACK_H

#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include "nat_maps.h"

#define RCL_CT_BUCKETS (RCL_CT_SIZE / RCL_CT_WAYS)
_Static_assert(RCL_CT_SIZE % RCL_CT_WAYS == 0 && (RCL_CT_BUCKETS & (RCL_CT_BUCKETS - 1)) == 0,
	       "RCL_CT_SIZE must be a power of two of at least RCL_CT_WAYS slots");

#define rcl_read_once(x) (*(volatile __typeof__(x) *)&(x))
#define rcl_write_once(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
#define rcl_barrier() asm volatile("" ::: "memory")

static __always_inline __u64 rcl_fmix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* The key as two words (its pad bytes are always zero). */
static __always_inline void rcl_ct_words(const struct rcl_ct_key *k, __u64 *a, __u64 *b)
{
	__builtin_memcpy(a, k, 8);
	__builtin_memcpy(b, (const char *)k + 8, 8);
}

static __always_inline __u32 rcl_ct_bucket(__u64 a, __u64 b)
{
	return (__u32)(rcl_fmix64(rcl_fmix64(a ^ RCL_CT_SEED) ^ b) & (RCL_CT_BUCKETS - 1));
}

/* A hash of the flow's 5-tuple that spreads new flows over a service's
 * backends (independent of the bucket hash). The client's kernel picks its
 * source port, so flows spread as with a random choice, without its helper
 * call; a flow that comes back after its entry expired returns to the same
 * backend while the service's backends are unchanged. */
static __always_inline __u32 rcl_ct_flow_hash(const struct rcl_ct_key *k)
{
	__u64 a, b;
	rcl_ct_words(k, &a, &b);
	return (__u32)(rcl_fmix64(rcl_fmix64(b ^ RCL_CT_SEED) ^ a) >> 32);
}

/* The key's words, and the index of its bucket's first slot. */
static __always_inline __u32 rcl_ct_first_slot(const struct rcl_ct_key *k, __u64 *a, __u64 *b)
{
	rcl_ct_words(k, a, b);
	return rcl_ct_bucket(*a, *b) * RCL_CT_WAYS;
}

/* Way w of the bucket starting at slot `base` (an inlined array lookup). */
static __always_inline struct rcl_ct_slot *rcl_ct_way(__u32 base, int w)
{
	__u32 idx = base + w;
	return rcl_ct.lookup(&idx);
}

/* Run the statement that follows for each slot `s` of the bucket at `base`. */
#define rcl_ct_for_each_way(base, w, s)                                    \
	_Pragma("unroll") for (int w = 0; w < RCL_CT_WAYS; w++)            \
		if (((s) = rcl_ct_way(base, w)) != 0)

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

/* An entry found: its slot, the version it was read at, and a copy of its
 * value (decisions use the copy; the slot is only touched through ct_*). */
struct rcl_ct_hit {
	struct rcl_ct_slot *slot;
	__u64 ver;
	struct rcl_ct_val val;
};

/* The entry for key, live or expired (not a dead one), or 0. */
static __always_inline int rcl_ct_find(const struct rcl_ct_key *key, struct rcl_ct_hit *hit)
{
	__u64 a, b;
	__u32 base = rcl_ct_first_slot(key, &a, &b);
	struct rcl_ct_slot *s;

	rcl_ct_for_each_way(base, w, s) {
		__u64 ver = rcl_read_once(s->ver);
		if (!ver || (ver & 1) || s->key_a != a || s->key_b != b)
			continue;
		__builtin_memcpy(&hit->val, &s->val, sizeof(hit->val));
		rcl_barrier();
		if (rcl_read_once(s->ver) != ver || !hit->val.type)
			continue;
		hit->slot = s;
		hit->ver = ver;
		return 1;
	}
	return 0;
}

/* Live entry for key (found and not idle past its timeout), or 0. The clock
 * is read only when there is an entry to judge (*now, if still 0): most
 * packets of a busy node are not service traffic and never need it. */
static __always_inline int rcl_ct_lookup(const struct rcl_ct_key *key, __u64 *now,
					 struct rcl_ct_hit *hit)
{
	if (!rcl_ct_find(key, hit))
		return 0;
	if (!*now)
		*now = rcl_now();
	return *now - hit->val.last_seen_ns <= rcl_ct_timeout_ns(key->proto, hit->val.flags);
}

/* A packet of the entry's flow was seen. Skipped if the slot changed hands
 * since it was read; a store racing a new claim can at worst freshen that
 * entry's clock or state bits, never its addresses. */
static __always_inline void rcl_ct_touch(struct rcl_ct_hit *hit, __u64 now, __u8 flags)
{
	struct rcl_ct_slot *s = hit->slot;
	if (rcl_read_once(s->ver) != hit->ver)
		return;
	s->val.last_seen_ns = now;
	if (flags & ~hit->val.flags)
		s->val.flags |= flags;
}

/* Make a found entry dead. 1 if this call did it. */
static __always_inline int rcl_ct_kill(struct rcl_ct_slot *s, __u64 ver)
{
	if (__sync_val_compare_and_swap(&s->ver, ver, ver + 1) != ver)
		return 0;
	s->val.type = 0;
	s->val.last_seen_ns = 0;
	__sync_fetch_and_add(&s->ver, 1);
	return 1;
}

/* A removal asked for from outside (the reconciler, through a test run of a
 * program that calls this), with the same claim the datapath uses, so it can
 * never clobber a flow that took the slot in the meantime. The request
 * follows an Ethernet header (a test run needs one). Returns 1 if the entry
 * in slot `index` was still at version `ver` and is now dead. */
struct rcl_ct_kill_req {
	__u32 index;
	__u32 pad;
	__u64 ver;
};

static __always_inline int rcl_ct_kill_request(struct __sk_buff *skb)
{
	struct rcl_ct_kill_req req;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &req, sizeof(req)))
		return 0;
	__u32 idx = req.index;
	struct rcl_ct_slot *s = rcl_ct.lookup(&idx);
	if (!s || !req.ver || (req.ver & 1))
		return 0;
	return rcl_ct_kill(s, req.ver);
}

/* Write key -> val into its bucket: over an entry with the same key, else a
 * free, dead or expired slot, else the least recently seen one. */
static __always_inline int rcl_ct_insert(const struct rcl_ct_key *key, const struct rcl_ct_val *val,
					 __u64 now)
{
	__u64 a, b;
	__u32 base = rcl_ct_first_slot(key, &a, &b);
	struct rcl_ct_slot *pick = 0, *oldest = 0;
	__u64 pick_ver = 0, oldest_ver = 0, oldest_seen = ~0ULL;
	__u8 oldest_flags = 0;
	struct rcl_ct_slot *s;

	rcl_ct_for_each_way(base, w, s) {
		__u64 ver = rcl_read_once(s->ver);
		if (ver & 1)
			continue; /* another CPU is writing it */
		if (ver && s->key_a == a && s->key_b == b) {
			pick = s; /* the same flow again (or its stale twin): reuse, never duplicate */
			pick_ver = ver;
			break;
		}
		if (!pick && (!ver || !s->val.type)) {
			pick = s;
			pick_ver = ver;
			continue;
		}
		__u64 seen = s->val.last_seen_ns;
		if (ver && s->val.type && seen < oldest_seen) {
			oldest = s;
			oldest_ver = ver;
			oldest_seen = seen;
			oldest_flags = s->val.flags;
		}
	}
	if (!pick && oldest) {
		pick = oldest;
		pick_ver = oldest_ver;
		if (now - oldest_seen <= rcl_ct_timeout_ns(key->proto, oldest_flags))
			rcl_nat_count(RCL_NS_CT_EVICTED); /* a live flow loses its entry */
	}
	if (!pick || __sync_val_compare_and_swap(&pick->ver, pick_ver, pick_ver + 1) != pick_ver)
		return -1;
	pick->key_a = a;
	pick->key_b = b;
	__builtin_memcpy(&pick->val, val, sizeof(*val));
	rcl_barrier();
	rcl_write_once(pick->ver, pick_ver + 2); /* publish */
	return 0;
}

/* The key the backend's replies to flow `fwd` will carry. Hairpin (the client
 * is the backend): the backend sees the VIP as its peer, so its replies come
 * back addressed to the VIP, not the client. */
static __always_inline void rcl_ct_reverse(const struct rcl_ct_key *fwd, __u32 be_ip,
					   __u16 be_port, __u8 flags, struct rcl_ct_key *rev)
{
	rev->src = be_ip;
	rev->dst = (flags & RCL_CT_HAIRPIN) ? fwd->dst : fwd->src;
	rev->sport = be_port;
	rev->dport = fwd->sport;
	rev->proto = fwd->proto;
}

/* Start loading the bucket a new flow's reverse entry goes to. It is a cache
 * miss (a random place in a table of megabytes); issued before the packet
 * rewrite, the miss overlaps that work instead of following it. */
static __always_inline void rcl_ct_warm(const struct rcl_ct_key *fwd, __u32 be_ip, __u16 be_port,
					__u8 flags)
{
	struct rcl_ct_key rev = {};
	__u64 a, b;
	rcl_ct_reverse(fwd, be_ip, be_port, flags, &rev);
	struct rcl_ct_slot *s = rcl_ct_way(rcl_ct_first_slot(&rev, &a, &b), 0);
	if (s)
		(void)rcl_read_once(s->ver);
}

/* Record a new balanced flow: forward entry for the client's 5-tuple and the
 * reverse entry for the backend's reply. Returns 0 or a negative error. */
static __always_inline int rcl_ct_create(struct rcl_ct_key *fwd, __u32 svc_id, __u32 ordinal,
					 __u32 be_ip, __u16 be_port, __u8 flags, __u64 now)
{
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

	rcl_ct_reverse(fwd, be_ip, be_port, flags, &rev);
	/* reverse first: a forward entry without its reverse would DNAT replies-less flows */
	if (rcl_ct_insert(&rev, &v, now))
		return -1;
	v.type = RCL_CT_FORWARD;
	if (rcl_ct_insert(fwd, &v, now))
		return -1;
	return 0;
}

#endif
