/* The tc programs' maps and the types they hold: the interfaces' state
 * (shared, under RCL_MAPS_DIR), and each set's own scratch, reverse-path
 * memory and tail-call table (set_maps.h). Declarations only, so that
 * bpf/maps.c makes them without compiling the datapath; tc_path.h and
 * policy.h hold the code that uses them. */
#ifndef RCL_TC_MAPS_H
#define RCL_TC_MAPS_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/ip.h>
#include "iface_types.h"
#include "nat_maps.h"
#include "policy_types.h"

/* The reconciler writes an interface's slot (its flags and ifindex, counters
 * zeroed) and clears it: the datapath never claims slots of its own, so a
 * plan always knows every entry in use. */
BPF_TABLE_PINNED("percpu_array", __u32, struct rcl_ifstate, rcl_ifstate, RCL_IFSTATE_SIZE,
		 RCL_MAPS_DIR "/rcl_ifstate");
BPF_TABLE_PINNED("array", __u32, struct rcl_globals, rcl_globals, 1,
		 RCL_MAPS_DIR "/rcl_globals");
BPF_TABLE_PINNED("array", __u32, struct rcl_wep_src, rcl_wep_src, RCL_IFSTATE_SIZE,
		 RCL_MAPS_DIR "/rcl_wep_src");

/* A packet as policy sees it. */
struct rcl_pol_flow {
	struct rcl_ct_key key; /* conntrack key (policy key space) */
	__u32 peer;            /* _be the remote address */
	__u32 prog;            /* the endpoint's program for this direction */
	__u32 local;           /* _be the local side's address (after NAT, once known) */
	__u16 dval;            /* _be destination port, or ICMP type << 8 | code */
	__u16 sval;            /* _be source port */
	__u8 pktflags;         /* RCL_CT_SYN/FIN/RST of this packet */
	__u8 trackable;        /* has a flow: TCP, UDP, SCTP, UDPLite, ICMP echo */
	__u8 side;             /* RCL_CT_POL_SRC (from the pod), _DST (to it) or _HOST */
	__u8 forced;           /* allowed without a verdict: a failsafe port, or no policy here */
	__u16 ip_id;           /* _be the IP identification of a fragment */
	__u8 frag;             /* RCL_POL_FRAG_FIRST or _LATER: a fragment of a datagram (policy.h) */
	__u8 pad;
};

/* A policy point's working state. Per CPU, not on the stack: inlined into
 * the tc programs beside the NAT path, it would not fit in their 512 bytes.
 * A tc program runs to its end on its CPU before the next one starts there. */
struct rcl_pol_scratch {
	struct rcl_pol_flow f;
	struct rcl_ct_key key2;
	struct rcl_ct_val val;
	struct rcl_frag_key frag_key; /* a first fragment's record (policy.h, nat.h), here */
	struct rcl_frag_ports frag_ports; /* for the reason the headers are (below) */
	__u64 now;   /* the clock, once read (0: not yet) */
	__u32 state; /* the caller's: kept here, the verifier's paths merge (see tc.c) */
	__u32 verdict;
	__u32 nat_fresh; /* 1: service NAT picked a backend for this packet's flow just now (nat.h) */
	__u32 hprog[RCL_HEP_PROGS]; /* a host endpoint's programs (rcl_pol_hep) */
	/* Headers are read here, not into the stack: partly written stack
	 * slots differ from path to path and keep the verifier from merging
	 * the paths that follow (the whole NAT path, once per parse outcome). */
	struct iphdr ip;
	__u8 l4[14];
	__u16 reject_mtu; /* nonzero: the reject program answers "fragmentation
			   * needed" with this MTU (masquerade), and clears it */
	__u32 zero; /* always 0: a one-entry array's key, off rcl_tc_ingress's full stack */
	__u32 rpf_slot; /* the reverse-path check's slot in rcl_rpf_seen (tc_path.h) */
	__u32 masq_back; /* RCL_MASQ_OUT, _ASKED or _AGAIN (tc_path.h rcl_masq_entry) */
	__u32 masq_reply; /* 1: tc ingress runs again on a reply to a masqueraded flow */
	__u32 masq_try;  /* the port a new masqueraded flow tries (rcl_masq_entry) */
	struct bpf_fib_lookup fib; /* the FIB's parameters (tc_path.h: the reverse-path
				    * check, a NAT reply's forwarding) */
};
RCL_SET_MAP("percpu_array", int, struct rcl_pol_scratch, rcl_pol_scratch, 1);

/* The reverse-path check's memory (tc_path.h rcl_rpf_failed). */
#define RCL_RPF_SEEN_SLOTS 1024
#define RCL_RPF_SEEN_NS    1000000000ULL
struct rcl_rpf_seen {
	__u32 saddr;
	__u32 daddr;
	__u32 ifindex;
	__u8 proto;
	__u8 mode;
	__u8 failed;
	__u8 pad;
	__u64 until; /* rcl_now() */
};
RCL_SET_MAP("percpu_array", int, struct rcl_rpf_seen, rcl_rpf_seen, RCL_RPF_SEEN_SLOTS);

/* The rate of ICMP errors (tc_path.h rcl_reject_allowed). */
BPF_TABLE_PINNED("percpu_array", __u32, __u64, rcl_reject_tat, 1,
		 RCL_MAPS_DIR "/rcl_reject_tat");

/* The set's tail calls, filled by the loader with the set's own programs
 * (reconciler/datapath/programs.py JUMP_TABLES) and pinned beside them:
 * a new flow's verdict, the ICMP error a rejected packet becomes,
 * masquerade (a flow's way out and its replies' way back), the set's
 * ingress program (run again on a reply masquerade made the client's), and
 * service NAT for a later IPv4 fragment. */
#define RCL_JUMP_JUDGE   0
#define RCL_JUMP_REJECT  1
#define RCL_JUMP_MASQ    2
#define RCL_JUMP_INGRESS 3
#define RCL_JUMP_FRAG    4
RCL_SET_MAP("prog", u32, u32, rcl_tc_jumps, 5);

#endif
