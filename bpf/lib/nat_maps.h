/* Service NAT maps, pinned under RCL_MAPS_DIR so the tc and cgroup programs
 * (separate bcc modules) and the reconciler share one copy.
 * Sizes follow Calico's bpfMapSize* defaults; the loader may override them.
 * Changing a size means a new map (see DESIGN section 4: resize is a replace). */
#ifndef RCL_NAT_MAPS_H
#define RCL_NAT_MAPS_H

#include "nat_types.h"
#include "policy_types.h"
#include "set_maps.h"

#ifndef RCL_MAPS_DIR
#error "RCL_MAPS_DIR must be defined by the loader, e.g. -DRCL_MAPS_DIR=\"/sys/fs/bpf/rcl/maps\""
#endif
#ifndef RCL_NAT_FE_SIZE
#define RCL_NAT_FE_SIZE 65536
#endif
#ifndef RCL_NAT_BE_SIZE
#define RCL_NAT_BE_SIZE 262144
#endif
#ifndef RCL_NAT_AFF_SIZE
#define RCL_NAT_AFF_SIZE 65536
#endif
#ifndef RCL_NAT_SRC_SIZE
#define RCL_NAT_SRC_SIZE 65536
#endif
#ifndef RCL_CT_BUCKETS
#define RCL_CT_BUCKETS 73143 /* buckets of RCL_CT_WAYS: Calico's 512000 entries */
#endif
#ifndef RCL_CTLB_UDP_REV_SIZE
#define RCL_CTLB_UDP_REV_SIZE 65536
#endif

BPF_TABLE_PINNED("hash", struct rcl_nat_fe_key, struct rcl_nat_fe_val, rcl_nat_fe,
		 RCL_NAT_FE_SIZE, RCL_MAPS_DIR "/rcl_nat_fe");
BPF_TABLE_PINNED("hash", struct rcl_nat_be_key, struct rcl_nat_be_val, rcl_nat_be,
		 RCL_NAT_BE_SIZE, RCL_MAPS_DIR "/rcl_nat_be");
/* loadBalancerSourceRanges: the sources each ranged frontend's svc_id admits */
BPF_TABLE_PINNED("lpm_trie", struct rcl_nat_src_key, struct rcl_nat_src_val, rcl_nat_src, RCL_NAT_SRC_SIZE,
		 RCL_MAPS_DIR "/rcl_nat_src", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lru_hash", struct rcl_nat_aff_key, struct rcl_nat_aff_val, rcl_nat_aff,
		 RCL_NAT_AFF_SIZE, RCL_MAPS_DIR "/rcl_nat_aff");
/* mmapable: the reconciler reads the table in place instead of copying it
 * entry by entry through batched reads; see reconciler/datapath/conntrack.py */
BPF_TABLE_PINNED("array", __u32, struct rcl_ct_bucket, rcl_ct, RCL_CT_BUCKETS,
		 RCL_MAPS_DIR "/rcl_ct", BPF_F_MMAPABLE);
/* A resize's old table and its bucket count (conntrack.h). Each build
 * stages its own map of maps, pinned in the build's directory, so program
 * sets built side by side never share one. */
#ifndef RCL_CT_PREV_PIN
#define RCL_CT_PREV_PIN RCL_MAPS_DIR "/rcl_ct_prev"
#endif
BPF_TABLE_PINNED("array_of_maps", __u32, int, rcl_ct_prev, 1, RCL_CT_PREV_PIN);
RCL_SET_MAP("array", int, __u32, rcl_ct_prev_n, 1);
BPF_TABLE_PINNED("array", __u32, struct rcl_nat_globals, rcl_nat_globals, 1,
		 RCL_MAPS_DIR "/rcl_nat_globals");
BPF_TABLE_PINNED("percpu_array", __u32, __u64, rcl_nat_stats, RCL_NS_MAX,
		 RCL_MAPS_DIR "/rcl_nat_stats");
BPF_TABLE_PINNED("lru_hash", struct rcl_ctlb_rev_key, struct rcl_ctlb_rev_val,
		 rcl_ctlb_udp_rev, RCL_CTLB_UDP_REV_SIZE, RCL_MAPS_DIR "/rcl_ctlb_udp_rev");
/* Fragmented datagrams' ports, by (source, destination, protocol, IP id),
 * written and read by service NAT (nat.h) and every policy point
 * (policy.h); least recently used records give way. */
#define RCL_FRAG_SIZE 8192
BPF_TABLE_PINNED("lru_hash", struct rcl_frag_key, struct rcl_frag_ports, rcl_frag, RCL_FRAG_SIZE,
		 RCL_MAPS_DIR "/rcl_frag");

/* The clock of conntrack and affinity timestamps: CLOCK_MONOTONIC at tick
 * resolution (4 ms at HZ=250), far finer than any of their timeouts. The
 * precise bpf_ktime_get_ns() reads the TSC behind a fence that waits for every
 * load in flight, a conntrack bucket's cache miss included, on a first
 * packet's path. Every writer and reader of these timestamps
 * must use this one clock.
 *
 * When the loader knows the kernel's tick rate (-DRCL_HZ, its CONFIG_HZ), the
 * clock is read from jiffies: the verifier inlines bpf_jiffies64() as one
 * load, where bpf_ktime_get_coarse_ns() is a helper call. Jiffies count CLOCK_MONOTONIC's ticks from INITIAL_JIFFIES
 * (set five minutes short of the 32-bit wrap at boot), so both readings
 * agree within a fraction of a second: entries written under one stay valid
 * under the other, across an upgrade. The loader passes RCL_HZ only when a
 * tick is a whole number of nanoseconds (not HZ=300: reconciler/compile/dataplane.py
 * tick_flags); the assertion holds it to that. */
#ifdef RCL_HZ
_Static_assert(RCL_HZ > 0 && 1000000000 % RCL_HZ == 0, "RCL_HZ: a tick of whole nanoseconds");
#define RCL_INITIAL_JIFFIES ((__u64)(__u32)(-300 * RCL_HZ))
static __always_inline __u64 rcl_now(void)
{
	return (bpf_jiffies64() - RCL_INITIAL_JIFFIES) * (1000000000ULL / RCL_HZ);
}
#else
static __always_inline __u64 rcl_now(void)
{
	return bpf_ktime_get_coarse_ns();
}
#endif

static __always_inline void rcl_nat_count(__u32 idx)
{
	__u64 *c = rcl_nat_stats.lookup(&idx);
	if (c)
		*c += 1; /* per-CPU slot: no atomics needed */
}

#endif
