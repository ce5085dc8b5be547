/* Connection tracking for service NAT: a hash table of our own, in an array.
 *
 * A forward entry (client -> VIP) says which backend the flow was given; a
 * reverse entry (backend -> client) says which VIP to put back as the source.
 * A new flow writes both. In a kernel hash map each write is a helper call
 * that takes a bucket lock and allocates, most of a first packet's cost
 * (bench/RESULTS.md). Here a slot is claimed with one compare-and-swap and then
 * written with plain stores, on memory the JIT reaches without a call.
 *
 * Layout: RCL_CT_BUCKETS buckets of 512 bytes (struct rcl_ct_bucket). A key
 * hashes to one bucket and an 8-bit tag (rcl_ct_place, mirrored by
 * reconciler/datapath/conntrack.py). The bucket's first cache line holds a header word
 * per way: version, tag, state and a coarse last-seen time; each entry has a
 * cache line of its own. A lookup reads the header line and only the slots
 * whose tag matches, so a miss (every new flow's) costs one cache line, not
 * one per way: in a table of megabytes each is a trip to memory.
 *
 * The version word is a seqlock:
 *   0     never used
 *   odd   being written: readers skip it, writers leave it alone
 *   even  stable: a reader copies key and value, then re-reads the version;
 *         if it moved, the copy is thrown away.
 * Expiry is lazy: an entry idle longer than its state's timeout is a miss,
 * and its slot is free for the next flow of its bucket. A full bucket gives
 * a new flow the slot of its least recently seen entry, judged by the header
 * (counted as RCL_NS_CT_EVICTED; size bpfMapSizeConntrack well above the live
 * flows). Entries are removed by making them dead (state 0) through the same
 * claim, from the datapath or from the reconciler (rcl_ct_kill via
 * BPF_PROG_TEST_RUN).
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

_Static_assert(sizeof(struct rcl_ct_bucket) == 512, "a bucket is eight cache lines");
_Static_assert(RCL_CT_BUCKETS >= 1, "a conntrack table has at least one bucket");

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

/* Where a key lives: its words, its bucket and its tag. The bucket index
 * scales the hash's low 32 bits to the bucket count (multiply-shift: any
 * count works, not only powers of two); the tag is its top 8 bits. */
struct rcl_ct_place {
	struct rcl_ct_bucket *bucket;
	__u64 a, b;
	__u32 h32; /* the hash's low half: the bucket in a table of any size */
	__u8 tag;
};

static __always_inline __u32 rcl_ct_scale(__u32 h32, __u32 buckets)
{
	return (__u32)(((__u64)h32 * (__u64)buckets) >> 32);
}

static __always_inline void rcl_ct_hash_words(__u64 a, __u64 b, struct rcl_ct_place *at)
{
	__u64 h = rcl_fmix64(rcl_fmix64(a ^ RCL_CT_SEED) ^ b);
	at->a = a;
	at->b = b;
	at->h32 = (__u32)h;
	at->tag = (__u8)(h >> 56);
}

static __always_inline int rcl_ct_place(const struct rcl_ct_key *k, struct rcl_ct_place *at)
{
	__u64 a, b;
	rcl_ct_words(k, &a, &b);
	rcl_ct_hash_words(a, b, at);
	__u32 idx = rcl_ct_scale(at->h32, RCL_CT_BUCKETS);
	at->bucket = rcl_ct.lookup(&idx);
	return at->bucket != 0;
}

/* The previous table, while a resize switches interfaces from the programs
 * of the old table to these (reconciler/datapath/ct_handover.py). Programs
 * attached to some interfaces still use only the old table, these programs
 * use both: a lookup that misses here asks the old table, and every entry
 * written here is written there too. A flow whose first packet and reply
 * meet different program sets is then found whichever table each one asks,
 * in either direction. The loader puts the old table in rcl_ct_prev's slot
 * and its bucket count in rcl_ct_prev_n; the reconciler empties both once no
 * program of the old table is attached. Outside a resize the count is 0 and
 * a miss costs one more (inlined) array read. Both maps are declared in
 * nat_maps.h. */

/* The bucket of the old table where the key at `at` lives, or 0 (no resize
 * in progress). */
static __always_inline struct rcl_ct_bucket *rcl_ct_prev_bucket(const struct rcl_ct_place *at,
								__u32 *idx)
{
	__u32 zero = 0;
	__u32 *n = rcl_ct_prev_n.lookup(&zero);
	if (!n || !*n)
		return 0;
	void *prev = rcl_ct_prev.lookup(&zero);
	if (!prev)
		return 0;
	*idx = rcl_ct_scale(at->h32, *n);
	return bpf_map_lookup_elem(prev, idx);
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

/* Header state of an entry: used, its protocol and the flags its timeout
 * depends on. */
static __always_inline __u8 rcl_ct_state(__u8 proto, __u8 flags)
{
	return RCL_CT_ST_USED | (proto == IPPROTO_TCP ? RCL_CT_ST_TCP : 0) | (flags & RCL_CT_ST_FLAGS);
}

static __always_inline __u16 rcl_ct_seen(__u64 now)
{
	return (__u16)(now >> RCL_CT_SEEN_SHIFT);
}

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

/* Does way w of the bucket hold an entry (live or expired) for the key at
 * `at`? Its slot is read only when the header's tag matches. */
static __always_inline int rcl_ct_holds(struct rcl_ct_bucket *bk, int w,
					const struct rcl_ct_place *at)
{
	return bk->way[w].state && bk->way[w].tag == at->tag && bk->slot[w].key_a == at->a &&
	       bk->slot[w].key_b == at->b;
}

/* An entry found: its header word and slot, the version it was read at, and
 * a copy of its value (decisions use the copy; the slot is only touched
 * through rcl_ct_*). */
struct rcl_ct_hit {
	struct rcl_ct_way *way;
	struct rcl_ct_entry *slot;
	__u32 ver;
	struct rcl_ct_val val;
};

/* The verifier follows every path through an unrolled way loop separately,
 * and a loop that ends on way 3 leaves a different constant address behind
 * than one that ends on way 5: the states do not merge, and they multiply
 * down the program (a find, then two reserves, made 845,000 of the
 * 1,000,000 instructions it may examine, and 3.5 s of every load). So a loop
 * ends on a way *index*, and the index passes through this before it becomes
 * an address: the same value at run time, but one the verifier sees only as
 * some number, bounded by the caller's check. `noise` is any value it does
 * not know (a key word): noise - noise is 0 to the CPU and a range to it. */
static __always_inline __u64 rcl_ct_opaque(__u64 w, __u64 noise)
{
	__u64 zero = noise;
	asm volatile("%0 -= %1" : "+r"(zero) : "r"(noise));
	return w + zero;
}

/* The entry for the key at `at` in bucket bk, live or expired (not a dead
 * one), or 0. */
static __always_inline int rcl_ct_find_in(struct rcl_ct_bucket *bk, const struct rcl_ct_place *at,
					  struct rcl_ct_hit *hit)
{
	__u64 found = RCL_CT_WAYS;
	__u32 found_ver = 0;

#pragma unroll
	for (int w = 0; w < RCL_CT_WAYS; w++) {
		__u32 ver = rcl_read_once(bk->way[w].ver);
		if (ver && !(ver & 1) && rcl_ct_holds(bk, w, at)) {
			found = w;
			found_ver = ver;
			break;
		}
	}
	/* The copy is made after the loop, on the one path every way leads to:
	 * inside it, the paths that found nothing would reach the (to the
	 * verifier, possible) w < RCL_CT_WAYS branch with hit->val unwritten,
	 * and clang may leave such a value in a register never set. A key sits
	 * in one way only (reserve reuses its way), so a torn read is a miss. */
	__u64 w = rcl_ct_opaque(found, at->a);
	if (w >= RCL_CT_WAYS)
		return 0;
	__builtin_memcpy(&hit->val, &bk->slot[w].val, sizeof(hit->val));
	rcl_barrier();
	if (rcl_read_once(bk->way[w].ver) != found_ver || !hit->val.type)
		return 0;
	hit->way = &bk->way[w];
	hit->slot = &bk->slot[w];
	hit->ver = found_ver;
	return 1;
}

/* The entry for key in this table, live or expired (not a dead one), or 0. */
static __always_inline int rcl_ct_find(const struct rcl_ct_key *key, struct rcl_ct_hit *hit)
{
	struct rcl_ct_place at;
	if (!rcl_ct_place(key, &at))
		return 0;
	return rcl_ct_find_in(at.bucket, &at, hit);
}

static __always_inline void rcl_ct_pull(const struct rcl_ct_place *at);

/* Live entry for key (found and not idle past its timeout), or 0. The clock
 * is read only when there is an entry to judge (*now, if still 0): most
 * packets of a busy node are not service traffic and never need it. */
static __always_inline int rcl_ct_lookup(const struct rcl_ct_key *key, __u64 *now,
					 struct rcl_ct_hit *hit)
{
	struct rcl_ct_place at;
	if (!rcl_ct_place(key, &at))
		return 0;
	rcl_ct_pull(&at);
	if (!rcl_ct_find_in(at.bucket, &at, hit))
		return 0;
	if (!*now)
		*now = rcl_now();
	return *now - hit->val.last_seen_ns <= rcl_ct_timeout_ns(key->proto, hit->val.flags);
}

/* A packet of the entry's flow was seen at `now`. Skipped if the slot changed
 * hands since it was read; a store racing a new claim can at worst freshen
 * that entry's clock or state bits, never its addresses. The header's coarse
 * clock is written only when it moves (about once a second). */
static __always_inline void rcl_ct_touch(struct rcl_ct_hit *hit, __u64 now, __u8 flags)
{
	struct rcl_ct_way *way = hit->way;
	if (rcl_read_once(way->ver) != hit->ver)
		return;
	hit->slot->val.last_seen_ns = now;
	__u16 seen = rcl_ct_seen(now);
	if (way->seen != seen)
		way->seen = seen;
	if (flags & ~hit->val.flags) {
		hit->slot->val.flags |= flags;
		if (flags & RCL_CT_ST_FLAGS & ~way->state)
			way->state |= flags & RCL_CT_ST_FLAGS;
	}
}

/* Claim the way at (even) version `ver` by making it odd: 1 if this call
 * did. The compare-and-swap covers the whole header word, whose coarse clock
 * and state a concurrent touch may move: if only they moved, it tries again. */
static __always_inline int rcl_ct_claim(struct rcl_ct_way *way, __u32 ver)
{
#pragma unroll
	for (int i = 0; i < 2; i++) {
		__u64 old = rcl_read_once(way->word);
		if ((__u32)old != ver)
			return 0;
		/* ver sits in the low half (little-endian) and is even: +1 cannot carry */
		if (__sync_val_compare_and_swap(&way->word, old, old + 1) == old)
			return 1;
	}
	return 0;
}

/* Make the entry in `way` dead if it is still at version `ver`. 1 if this
 * call did it. */
static __always_inline int rcl_ct_kill_way(struct rcl_ct_way *way, struct rcl_ct_entry *e, __u32 ver)
{
	if (!rcl_ct_claim(way, ver))
		return 0;
	way->state = 0;
	e->val.type = 0;
	e->val.last_seen_ns = 0;
	rcl_barrier();
	rcl_write_once(way->ver, ver + 2);
	return 1;
}

/* During a resize, a removal also removes the key from the previous table,
 * where a lookup that misses here would find it again. */
static __always_inline void rcl_ct_forget_prev(__u64 a, __u64 b)
{
	struct rcl_ct_place at;
	__u32 idx;
	rcl_ct_hash_words(a, b, &at);
	struct rcl_ct_bucket *prev = rcl_ct_prev_bucket(&at, &idx);
	struct rcl_ct_hit old;
	if (prev && rcl_ct_find_in(prev, &at, &old))
		rcl_ct_kill_way(old.way, old.slot, old.ver);
}

/* rcl_ct_forget_prev for a key: during a resize, remove it from the
 * previous table. */
static __always_inline void rcl_ct_forget_key(const struct rcl_ct_key *k)
{
	__u64 a, b;
	rcl_ct_words(k, &a, &b);
	rcl_ct_forget_prev(a, b);
}

/* Remove a found entry (its key is read before the claim, which proves it
 * was still that entry's). */
static __always_inline int rcl_ct_kill_entry(struct rcl_ct_way *way, struct rcl_ct_entry *e,
					     __u32 ver)
{
	__u64 a = rcl_read_once(e->key_a), b = rcl_read_once(e->key_b);
	if (!rcl_ct_kill_way(way, e, ver))
		return 0;
	rcl_ct_forget_prev(a, b);
	return 1;
}

static __always_inline int rcl_ct_kill(struct rcl_ct_hit *hit)
{
	return rcl_ct_kill_entry(hit->way, hit->slot, hit->ver);
}

/* A removal asked for from outside (the reconciler, through a test run of a
 * program that calls this), with the same claim the datapath uses, so it can
 * never clobber a flow that took the slot in the meantime. The request
 * follows an Ethernet header (a test run needs one). `index` is bucket *
 * RCL_CT_WAYS + way. Returns 1 if that entry was still at version `ver` and is
 * now dead. */
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
	__u32 idx = req.index / RCL_CT_WAYS;
	__u64 w = req.index % RCL_CT_WAYS;
	/* Hide w's range from clang, so the check below stays in the code: the
	 * verifier needs it to bound the slot's address. */
	asm volatile("" : "+r"(w));
	struct rcl_ct_bucket *bk = rcl_ct.lookup(&idx);
	if (!bk || w >= RCL_CT_WAYS || !req.ver || (req.ver & 1) || req.ver > 0xffffffffULL)
		return 0;
	return rcl_ct_kill_entry(&bk->way[w], &bk->slot[w], (__u32)req.ver);
}

/* A way claimed for a key (its version made odd), to be filled. */
struct rcl_ct_claim {
	struct rcl_ct_way *way;
	struct rcl_ct_entry *slot;
	__u32 ver; /* the version it was claimed at */
	__u32 h32;
	__u8 tag;
	__u64 a, b;
};

/* Claim way `pick` of bucket bk (seen at version pick_ver) for the key at
 * `at` and describe the claim in c. Returns 0, or -1 when the way was taken
 * meanwhile. */
static __always_inline int rcl_ct_take(struct rcl_ct_bucket *bk, __u64 pick, __u32 pick_ver,
				       const struct rcl_ct_place *at, struct rcl_ct_claim *c)
{
	__u64 w = rcl_ct_opaque(pick, at->a);
	if (w >= RCL_CT_WAYS || !rcl_ct_claim(&bk->way[w], pick_ver))
		return -1;
	c->way = &bk->way[w];
	c->slot = &bk->slot[w];
	c->ver = pick_ver;
	c->tag = at->tag;
	c->a = at->a;
	c->b = at->b;
	c->h32 = at->h32;
	return 0;
}

/* A bucket's ways as a claim judges them, from the header line: `pick`, the
 * way holding the key (a reuse, never a duplicate), else the first free or
 * dead one; `oldest`, the least recently seen live one. RCL_CT_WAYS: none. */
struct rcl_ct_choice {
	__u64 pick, oldest; /* way indexes */
	__u32 pick_ver, oldest_ver;
	__u16 oldest_age;
	__u8 oldest_state;
};

static __always_inline void rcl_ct_choose(struct rcl_ct_bucket *bk, const struct rcl_ct_place *at,
					  __u16 now16, struct rcl_ct_choice *ch)
{
	ch->pick = RCL_CT_WAYS;
	ch->oldest = RCL_CT_WAYS;
	ch->pick_ver = 0;
	ch->oldest_ver = 0;
	ch->oldest_age = 0;
	ch->oldest_state = 0;

#pragma unroll
	for (int w = 0; w < RCL_CT_WAYS; w++) {
		__u32 ver = rcl_read_once(bk->way[w].ver);
		if (ver & 1)
			continue; /* another CPU is writing it */
		__u8 state = bk->way[w].state;
		if (ver && rcl_ct_holds(bk, w, at)) {
			ch->pick = w; /* the same flow again (or its stale twin) */
			ch->pick_ver = ver;
			break;
		}
		if (!ver || !state) {
			if (ch->pick == RCL_CT_WAYS) {
				ch->pick = w;
				ch->pick_ver = ver;
			}
			continue;
		}
		__u16 age = now16 - bk->way[w].seen;
		if (ch->oldest == RCL_CT_WAYS || age > ch->oldest_age) {
			ch->oldest = w;
			ch->oldest_ver = ver;
			ch->oldest_age = age;
			ch->oldest_state = state;
		}
	}
}

/* Claim the way key -> val goes to in its bucket: the one holding the same
 * key, else a free or dead one, else the least recently seen one, all judged
 * from the header line. Returns 0, or -1 when the way was taken meanwhile. */
static __always_inline int rcl_ct_reserve_in(struct rcl_ct_bucket *bk, const struct rcl_ct_place *at,
					     __u64 now, struct rcl_ct_claim *c)
{
	struct rcl_ct_choice ch;
	rcl_ct_choose(bk, at, rcl_ct_seen(now), &ch);
	if (ch.pick == RCL_CT_WAYS && ch.oldest != RCL_CT_WAYS) {
		ch.pick = ch.oldest;
		ch.pick_ver = ch.oldest_ver;
		__u8 proto = (ch.oldest_state & RCL_CT_ST_TCP) ? IPPROTO_TCP : IPPROTO_UDP;
		__u64 timeout = rcl_ct_timeout_ns(proto, ch.oldest_state & RCL_CT_ST_FLAGS);
		if (ch.oldest_age <= (timeout >> RCL_CT_SEEN_SHIFT) + 1)
			rcl_nat_count(RCL_NS_CT_EVICTED); /* (probably) a live flow loses its entry */
	}
	return rcl_ct_take(bk, ch.pick, ch.pick_ver, at, c);
}

/* Claim a way of bucket bk for the key at `at`: the one holding the key,
 * else a free or dead one, else the least recently seen one. For copies
 * between the two tables of a resize: rcl_ct_reserve_in without its
 * eviction count, whose victim bookkeeping is what makes the way loop
 * costly for the verifier where it is inlined. The loop ends only on the
 * key's own way: a free way before it must not take a second copy of the
 * key (a lookup finds the first, an update may change the other). Returns
 * 0, or -1 when the way was taken meanwhile. */
static __always_inline int rcl_ct_reserve_copy_in(struct rcl_ct_bucket *bk,
						  const struct rcl_ct_place *at, __u64 now,
						  struct rcl_ct_claim *c)
{
	__u64 pick = RCL_CT_WAYS, best = RCL_CT_WAYS;
	__u32 pick_ver = 0, best_ver = 0, best_rank = 0;
	__u16 now16 = rcl_ct_seen(now);

#pragma unroll
	for (int w = 0; w < RCL_CT_WAYS; w++) {
		__u32 ver = rcl_read_once(bk->way[w].ver);
		if (ver & 1)
			continue;
		if (ver && rcl_ct_holds(bk, w, at)) {
			pick = w;
			pick_ver = ver;
			break;
		}
		/* one candidate, ranked: a free or dead way above every live
		 * one, live ones by age (one more than it, so that any way
		 * ranks above none). Its index goes through rcl_ct_opaque: a
		 * constant per way would give the verifier a state per choice. */
		__u32 rank = (!ver || !bk->way[w].state) ? 0x10001
							 : (__u32)(__u16)(now16 - bk->way[w].seen) + 1;
		if (rank > best_rank) {
			best = rcl_ct_opaque(w, at->a);
			best_ver = ver;
			best_rank = rank;
		}
	}
	if (pick == RCL_CT_WAYS) {
		pick = best;
		pick_ver = best_ver;
	}
	return rcl_ct_take(bk, pick, pick_ver, at, c);
}

static __always_inline int rcl_ct_reserve(const struct rcl_ct_key *key, __u64 now,
					  struct rcl_ct_claim *c)
{
	struct rcl_ct_place at;
	if (!rcl_ct_place(key, &at))
		return -1;
	return rcl_ct_reserve_in(at.bucket, &at, now, c);
}

/* Write a claimed way and publish it. Plain stores only: a slot's cache line
 * that is not in the cache yet is fetched while the program goes on. */
static __always_inline void rcl_ct_publish(const struct rcl_ct_claim *c, __u8 proto,
					   const struct rcl_ct_val *val, __u64 now)
{
	struct rcl_ct_way *way = c->way;
	c->slot->key_a = c->a;
	c->slot->key_b = c->b;
	__builtin_memcpy(&c->slot->val, val, sizeof(*val));
	way->tag = c->tag;
	way->state = rcl_ct_state(proto, val->flags);
	way->seen = rcl_ct_seen(now);
	rcl_barrier();
	rcl_write_once(way->ver, c->ver + 2); /* publish */
}

/* Write a claimed way and publish it; during a resize, write the entry into
 * the previous table too (programs still attached with only that table
 * must find it). */
static __always_inline void rcl_ct_fill(const struct rcl_ct_claim *c, __u8 proto,
					const struct rcl_ct_val *val, __u64 now)
{
	rcl_ct_publish(c, proto, val, now);
	struct rcl_ct_place at = {.a = c->a, .b = c->b, .h32 = c->h32, .tag = c->tag};
	__u32 idx;
	struct rcl_ct_bucket *prev = rcl_ct_prev_bucket(&at, &idx);
	struct rcl_ct_claim pc;
	if (prev && !rcl_ct_reserve_copy_in(prev, &at, now, &pc))
		rcl_ct_publish(&pc, proto, val, now);
}

/* During a resize: if this table lacks the key at `at` and the previous
 * table holds it (written there by programs that know only that one), copy
 * it here first, with the datapath's claim, so the lookup that follows finds
 * it here. A hit is then always in this table: pointers into two maps would
 * give the verifier two states to follow for the rest of the program. Only
 * the lookups that start a packet's conntrack (and a reply's forward entry)
 * pull; the rest of the packet finds what they pulled. Outside a resize it
 * costs one array read. */
static __always_inline void rcl_ct_pull(const struct rcl_ct_place *at)
{
	__u32 idx;
	struct rcl_ct_bucket *prev = rcl_ct_prev_bucket(at, &idx);
	struct rcl_ct_hit old, here;
	struct rcl_ct_claim c;
	if (!prev || !rcl_ct_find_in(prev, at, &old))
		return;
	/* Here already, and as recent: nothing to copy. An older copy here (an
	 * earlier flow of the same addresses and ports, expired) must not hide
	 * the live one the old programs keep. */
	if (rcl_ct_find_in(at->bucket, at, &here) && here.val.last_seen_ns >= old.val.last_seen_ns)
		return;
	if (rcl_ct_reserve_copy_in(at->bucket, at, rcl_now(), &c))
		return;
	rcl_ct_publish(&c, (__u8)(at->b >> 32) /* struct rcl_ct_key.proto */, &old.val,
		       old.val.last_seen_ns);
}

/* Claim a way of bucket bk for an entry carried over from the previous
 * table, last seen at coarse time `seen`: as rcl_ct_reserve_in, except that
 * the least recently seen entry makes way only if it was seen before the
 * carried one (strictly, at the header's resolution). The carried entries
 * are what the old table alone holds at the end of a handover, most of them
 * flows long over: one must never take the place of an entry more recent
 * than itself. Returns 0, or -1 when there is no such way or it was taken
 * meanwhile. */
static __always_inline int rcl_ct_reserve_adopt_in(struct rcl_ct_bucket *bk,
						   const struct rcl_ct_place *at, __u64 now,
						   __u16 seen, struct rcl_ct_claim *c)
{
	struct rcl_ct_choice ch;
	__u16 now16 = rcl_ct_seen(now);
	rcl_ct_choose(bk, at, now16, &ch);
	if (ch.pick == RCL_CT_WAYS && ch.oldest != RCL_CT_WAYS &&
	    ch.oldest_age > (__u16)(now16 - seen)) {
		ch.pick = ch.oldest;
		ch.pick_ver = ch.oldest_ver;
	}
	return rcl_ct_take(bk, ch.pick, ch.pick_ver, at, c);
}

/* rcl_ct_find, after pulling the key from the previous table. */
static __always_inline int rcl_ct_find_pulled(const struct rcl_ct_key *key, struct rcl_ct_hit *hit)
{
	struct rcl_ct_place at;
	if (!rcl_ct_place(key, &at))
		return 0;
	rcl_ct_pull(&at);
	return rcl_ct_find_in(at.bucket, &at, hit);
}

/* Carry one entry of the previous table into this one, with the
 * datapath's own claim: the reconciler's sweep once no program of the old
 * table is attached (reconciler/datapath/ct_handover.py), through a test run
 * with a struct rcl_ct_kill_req naming the entry in the previous table.
 * It takes a way of its bucket here as a new flow would, except that it
 * never takes the place of an entry seen more recently than itself
 * (rcl_ct_reserve_adopt_in). Returns 1 if it was copied, 2 if this table
 * holds the key already (as recently seen), 3 if that is the same flow and
 * took state flags from it, 0 if the entry is gone or moved, finds no such
 * way, or there is no previous table. */
static __always_inline int rcl_ct_adopt_request(struct __sk_buff *skb)
{
	struct rcl_ct_kill_req req;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &req, sizeof(req)))
		return 0;
	__u32 zero = 0;
	__u32 *n = rcl_ct_prev_n.lookup(&zero);
	void *prev = rcl_ct_prev.lookup(&zero);
	if (!n || !*n || !prev)
		return 0;
	__u32 idx = req.index / RCL_CT_WAYS;
	__u64 w = req.index % RCL_CT_WAYS;
	asm volatile("" : "+r"(w)); /* as in rcl_ct_kill_request */
	struct rcl_ct_bucket *bk = bpf_map_lookup_elem(prev, &idx);
	if (!bk || w >= RCL_CT_WAYS || !req.ver || (req.ver & 1) || req.ver > 0xffffffffULL)
		return 0;
	struct rcl_ct_val val;
	__u64 a = rcl_read_once(bk->slot[w].key_a), b = rcl_read_once(bk->slot[w].key_b);
	__builtin_memcpy(&val, &bk->slot[w].val, sizeof(val));
	rcl_barrier();
	if (rcl_read_once(bk->way[w].ver) != (__u32)req.ver || !val.type)
		return 0;
	struct rcl_ct_place at;
	rcl_ct_hash_words(a, b, &at);
	__u32 i = rcl_ct_scale(at.h32, RCL_CT_BUCKETS);
	struct rcl_ct_bucket *here = rcl_ct.lookup(&i);
	struct rcl_ct_hit hit;
	if (!here)
		return 0;
	if (rcl_ct_find_in(here, &at, &hit) && hit.val.last_seen_ns >= val.last_seen_ns) {
		/* The same flow (created at the same time), seen here since: the
		 * state the old programs recorded after the copy (the first
		 * reply's mark, a FIN or RST, a policy side's approval) is added,
		 * the clock kept. An earlier flow of the same tuple adds nothing. */
		if (hit.val.created_ns == val.created_ns && (val.flags & ~hit.val.flags)) {
			rcl_ct_touch(&hit, hit.val.last_seen_ns, val.flags);
			return 3;
		}
		return 2; /* as in rcl_ct_pull */
	}
	struct rcl_ct_claim c;
	if (rcl_ct_reserve_adopt_in(here, &at, rcl_now(), rcl_ct_seen(val.last_seen_ns), &c))
		return 0;
	struct rcl_ct_key key;
	__builtin_memcpy(&key, &a, 8);
	__builtin_memcpy((char *)&key + 8, &b, 8);
	rcl_ct_publish(&c, key.proto, &val, val.last_seen_ns);
	return 1;
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

/* Start loading the header line of the bucket a new flow's reverse entry goes
 * to. It is a cache miss (a random place in a table of megabytes); issued
 * early, the miss overlaps other work instead of following it. */
static __always_inline void rcl_ct_warm(const struct rcl_ct_key *fwd, __u32 be_ip, __u16 be_port,
					__u8 flags)
{
	struct rcl_ct_key rev = {};
	struct rcl_ct_place at;
	rcl_ct_reverse(fwd, be_ip, be_port, flags, &rev);
	if (rcl_ct_place(&rev, &at))
		(void)rcl_read_once(at.bucket->way[0].ver);
}

/* Record a new balanced flow: forward entry for the client's 5-tuple and the
 * reverse entry for the backend's reply. `masq` (RCL_CT_MASQ or 0) joins the
 * entries' flags apart from `flags`, which decide the reverse key: a bit
 * the verifier does not know there would make it walk both of its ways.
 * Returns 0 or a negative error. */
static __always_inline int rcl_ct_create(struct rcl_ct_key *fwd, __u32 svc_id, __u32 ordinal,
					 __u32 be_ip, __u16 be_port, __u8 flags, __u8 masq,
					 __u64 now)
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
	v.flags = flags | masq;

	rcl_ct_reverse(fwd, be_ip, be_port, flags, &rev);
	/* Both ways are claimed before either is written: a claim is a locked
	 * instruction, which would wait for the other slot's stores to reach
	 * its cache line (a miss). The reverse entry is published first: a
	 * forward entry without its reverse would DNAT replies-less flows. */
	struct rcl_ct_claim rc, fc;
	if (rcl_ct_reserve(&rev, now, &rc))
		return -1;
	int fwd_ok = rcl_ct_reserve(fwd, now, &fc) == 0; /* never rc: a claimed way is odd */
	rcl_ct_fill(&rc, rev.proto, &v, now);
	if (!fwd_ok)
		return -1;
	v.type = RCL_CT_FORWARD;
	rcl_ct_fill(&fc, fwd->proto, &v, now);
	return 0;
}

#endif
