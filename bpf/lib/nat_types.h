/* Service NAT (kube-proxy replacement) types shared by the tc and cgroup programs.
 * Mirrored field by field in reconciler/datapath/maps/nat_types.py; tests/kernel/test_nat_layout.py
 * checks sizes and offsets against what bcc compiles. Every struct has explicit
 * padding (no implicit holes) so Python, C and the kernel agree byte for byte.
 * "_be" in a comment = network byte order; everything else is host order. */
#ifndef RCL_NAT_TYPES_H
#define RCL_NAT_TYPES_H

/* struct rcl_nat_fe_val.flags */
#define RCL_FE_AFFINITY  1 /* sessionAffinity: ClientIP */
#define RCL_FE_ETP_LOCAL 2 /* set by the compiler on external frontends (nodeport, LB, external IP) */
#define RCL_FE_ITP_LOCAL 4 /* set by the compiler on cluster-IP frontends */
#define RCL_FE_SRC_RANGES 8 /* a load balancer IP of a Service with loadBalancerSourceRanges:
			     * a new flow's source must be in rcl_nat_src under svc_id */

/* rcl_nat_fe key: 8 bytes. */
struct rcl_nat_fe_key {
	__u32 vip;      /* _be */
	__u16 port;     /* _be */
	__u8  proto;    /* IPPROTO_TCP / IPPROTO_UDP */
	__u8  pad;
};

/* rcl_nat_fe value: 20 bytes. Local backends sit at ordinals [0, local_count). */
struct rcl_nat_fe_val {
	__u32 svc_id;
	__u32 count;        /* backends at ordinals [0, count) */
	__u32 local_count;
	__u32 flags;        /* RCL_FE_* */
	__u32 affinity_timeout_s;
};

/* rcl_nat_be key: 8 bytes. */
struct rcl_nat_be_key {
	__u32 svc_id;
	__u32 ordinal;
};

/* rcl_nat_be value: 8 bytes. */
struct rcl_nat_be_val {
	__u32 ip;       /* _be */
	__u16 port;     /* _be */
	__u16 flags;    /* reserved, 0 */
};

/* rcl_nat_src key: 12 bytes, an LPM trie key. prefixlen counts from svc_id,
 * which every entry matches whole: 32 + the range's own prefix length. */
struct rcl_nat_src_key {
	__u32 prefixlen;
	__u32 svc_id;
	__u32 src;      /* _be */
};

/* rcl_nat_src value: 4 bytes. */
struct rcl_nat_src_val {
	__u32 reserved; /* 0 */
};

/* rcl_nat_aff key: 8 bytes. */
struct rcl_nat_aff_key {
	__u32 client_ip; /* _be; 0 for connect-time LB (the node itself) */
	__u32 svc_id;
};

/* rcl_nat_aff value: 24 bytes. The ordinal lets the datapath check the backend
 * still exists (lookup svc_id+ordinal, compare ip/port) without a scan. */
struct rcl_nat_aff_val {
	__u64 ts_ns;     /* rcl_now() when last used */
	__u32 ip;        /* _be backend */
	__u16 port;      /* _be backend */
	__u16 pad;
	__u32 ordinal;
	__u32 pad2;
};

/* struct rcl_ct_val.type */
#define RCL_CT_FORWARD 1 /* client -> VIP: DNAT to the recorded backend */
#define RCL_CT_REVERSE 2 /* backend -> client: SNAT the source back to the VIP */
#define RCL_CT_POL_FWD 3 /* a flow policy allowed, as its first packet was seen (bpf/lib/policy.h) */
#define RCL_CT_POL_REV 4 /* its replies */
#define RCL_CT_MASQ_FWD 5 /* a masqueraded flow as it leaves for its backend (bpf/lib/masq.h):
			   * the source it leaves with, orig_ip:orig_port */
#define RCL_CT_MASQ_REV 6 /* the backend's replies to that source: the client they go
			   * back to, orig_ip:orig_port */

/* struct rcl_ct_val.flags (TCP state, seen in either direction) */
#define RCL_CT_SYN  1
#define RCL_CT_EST  2 /* a reply was seen */
#define RCL_CT_FIN  4
#define RCL_CT_RST  8
#define RCL_CT_HAIRPIN 16 /* the client is its own backend: its source is NATed to the VIP too */
#define RCL_CT_POL_SRC 32 /* policy entries: the sender's egress policy allowed the flow */
#define RCL_CT_POL_DST 64 /* policy entries: the receiver's ingress policy allowed it */
#define RCL_CT_POL_HOST 128 /* policy entries: a host endpoint's policy allowed it where it
			     * crossed the endpoint (arriving or leaving) */
/* NAT entries (FORWARD/REVERSE): an external flow balanced to a backend on
 * another node, masqueraded to this node's address (bpf/lib/masq.h). The
 * bit policy entries use for RCL_CT_POL_SRC: the key spaces never meet. */
#define RCL_CT_MASQ 32

/* rcl_ct_key.pad[0]: policy entries live beside NAT entries in one table, in
 * a key space of their own (a NAT key's pad is 0). */
#define RCL_CT_KEY_POLICY 1
#define RCL_CT_KEY_MASQ   2 /* masquerade entries (bpf/lib/masq.h) */

/* rcl_ct key: 16 bytes; the packet's own 5-tuple as it arrives. */
struct rcl_ct_key {
	__u32 src;      /* _be */
	__u32 dst;      /* _be */
	__u16 sport;    /* _be */
	__u16 dport;    /* _be */
	__u8  proto;
	__u8  pad[3];
};

/* rcl_ct value: 40 bytes. */
struct rcl_ct_val {
	__u64 created_ns;
	__u64 last_seen_ns;
	__u32 svc_id;
	__u32 be_ordinal;
	__u32 orig_ip;   /* _be VIP the client used */
	__u32 be_ip;     /* _be backend chosen */
	__u16 orig_port; /* _be */
	__u16 be_port;   /* _be */
	__u8  type;      /* RCL_CT_FORWARD / RCL_CT_REVERSE */
	__u8  flags;     /* RCL_CT_* */
	__u16 pad;
};

/* The conntrack table (see conntrack.h) is an array of 512-byte buckets: a
 * first cache line of RCL_CT_WAYS header words, then one line per entry. A
 * lookup that finds nothing reads the header line alone. */
#define RCL_CT_WAYS 7

/* A way's header word: 8 bytes, claimed as a whole (BPF has 64-bit
 * compare-and-swap only, for bcc's target). */
struct rcl_ct_way {
	union {
		__u64 word;
		struct {
			__u32 ver;   /* seqlock: 0 never used, odd being written, even stable */
			__u8  tag;   /* 8 more bits of the key's hash: lookups read matching slots only */
			__u8  state; /* 0: free or removed; else RCL_CT_ST_USED, _TCP, timeout flags */
			__u16 seen;  /* last seen in 2^RCL_CT_SEEN_SHIFT ns units, wrapping: for a victim */
		};
	};
};

/* struct rcl_ct_way.state: what choosing a victim needs without the slot. */
#define RCL_CT_ST_USED 0x80
#define RCL_CT_ST_TCP  0x40
#define RCL_CT_ST_FLAGS (RCL_CT_SYN | RCL_CT_EST | RCL_CT_FIN | RCL_CT_RST) /* the timeout's */
#define RCL_CT_SEEN_SHIFT 30 /* ~1.07 s: wraps after ~19.5 hours */

/* An entry: 64 bytes, a cache line of its own. */
struct rcl_ct_entry {
	__u64 key_a; /* struct rcl_ct_key, bytes 0-7 */
	__u64 key_b; /* struct rcl_ct_key, bytes 8-15 */
	struct rcl_ct_val val;
	__u64 pad;
};

/* rcl_ct value: 512 bytes. */
struct rcl_ct_bucket {
	struct rcl_ct_way way[RCL_CT_WAYS];
	__u64 spare;
	struct rcl_ct_entry slot[RCL_CT_WAYS];
};

/* Mixed into the bucket hash. Fixed, so the reconciler can place entries when
 * it migrates a table (reconciler/datapath/conntrack.py must use the same value). */
#define RCL_CT_SEED 0x52434c2d43540001ULL

/* rcl_nat_globals[0] flags: connect-time LB mode (Felix bpfConnectTimeLoadBalancing).
 * 0 is the default so an unwritten map behaves like Calico's default (TCP). */
#define RCL_CTLB_MASK     3
#define RCL_CTLB_TCP      0
#define RCL_CTLB_ALL      1
#define RCL_CTLB_DISABLED 2
/* The node's own sockets (in the network namespace host_netns) are balanced
 * at connect time for TCP and UDP, whatever the mode: no tc program sees
 * the host's own packets on their way to a VIP (Felix
 * bpfHostNetworkedNATWithoutCTLB). */
#define RCL_CTLB_HOST 4

/* rcl_nat_globals value: 32 bytes. A timeout of 0 means the built-in default
 * (RCL_CT_DEF_*, Calico's defaults). */
struct rcl_nat_globals {
	__u32 tcp_syn_sent_s;
	__u32 tcp_established_s;
	__u32 tcp_fin_s;
	__u32 tcp_rst_s;
	__u32 udp_s;
	__u32 generic_s;    /* ICMP and other protocols */
	__u32 flags;        /* RCL_CTLB_* */
	__u32 host_netns;   /* the node's network namespace: its cookie's low 32 bits */
};

#define RCL_CT_DEF_SYN_SENT_S    20
#define RCL_CT_DEF_ESTABLISHED_S 3600
#define RCL_CT_DEF_FIN_S         30
#define RCL_CT_DEF_RST_S         40
#define RCL_CT_DEF_UDP_S         60
#define RCL_CT_DEF_GENERIC_S     600

/* rcl_ctlb_udp_rev key: 16 bytes. Which VIP a connect-time-balanced UDP socket
 * really talked to, so recvmsg4 can show the VIP as the reply's source. */
struct rcl_ctlb_rev_key {
	__u64 cookie;   /* bpf_get_socket_cookie() */
	__u32 be_ip;    /* _be */
	__u16 be_port;  /* _be */
	__u16 pad;
};

/* rcl_ctlb_udp_rev value: 16 bytes. */
struct rcl_ctlb_rev_val {
	__u64 ts_ns;
	__u32 vip;      /* _be */
	__u16 vport;    /* _be */
	__u16 pad;
};

/* rcl_nat_stats index (per-CPU __u64 packet counters by outcome / drop reason). */
#define RCL_NS_DNAT_NEW     0 /* new connection balanced */
#define RCL_NS_DNAT_CT      1 /* forward conntrack hit */
#define RCL_NS_SNAT         2 /* reply rewritten back to the VIP */
#define RCL_NS_REJECT_NOBE  3 /* frontend with no backends */
#define RCL_NS_REJECT_NOLOCAL 4 /* ETP/ITP local and no local backend */
#define RCL_NS_STALE        5 /* conntrack or affinity pointed at a removed backend */
#define RCL_NS_ERROR        6 /* rewrite failed (helper error) */
#define RCL_NS_FRAG         7 /* a later IPv4 fragment whose first NAT never saw: passed untouched */
#define RCL_NS_CTLB_TCP     8
#define RCL_NS_CTLB_UDP     9
#define RCL_NS_CTLB_REJECT  10
#define RCL_NS_CTLB_UDP_REV 11
#define RCL_NS_REJECT_LIMITED 12 /* no backend, and over the ICMP error rate: dropped silently */
#define RCL_NS_CT_EVICTED   13 /* a new flow took the slot of a live one (conntrack table full) */
#define RCL_NS_SRC_DENIED   14 /* a new flow to a load balancer IP from outside its source ranges */
#define RCL_NS_RPF_DROPPED  15 /* from a host interface, a source that fails bpfEnforceRPF */
#define RCL_NS_MASQ_NEW     16 /* a flow masqueraded: a source address and port claimed */
#define RCL_NS_MASQ_FAILED  17 /* a flow to masquerade dropped: no route or source address
				* to the backend, no free port, a TTL run out, or too big
				* without DF */
#define RCL_NS_MAX          18

#endif
