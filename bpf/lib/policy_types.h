/* Network policy maps' types. Mirrored in reconciler/datapath/maps/policy_types.py;
 * tests/kernel/test_policy_layout.py checks sizes and offsets against what bcc
 * compiles. "_be" = network byte order. */
#ifndef RCL_POLICY_TYPES_H
#define RCL_POLICY_TYPES_H

/* struct rcl_pol_cls_key.kind: which dimension a class entry belongs to */
#define RCL_POL_K_ADDR  0 /* the remote address */
#define RCL_POL_K_DPORT 1 /* protocol and destination port (ICMP: type << 8 | code) */
#define RCL_POL_K_SPORT 2 /* protocol and source port */
#define RCL_POL_K_NET   3 /* an address prefix shorter than /32 as an exact entry:
			   * proto holds the length, addr the masked address
			   * (the XDP program's flat lookup, see bpf/xdp.c) */

/* struct rcl_pol_verdict.action */
#define RCL_POL_ALLOW 1
#define RCL_POL_DENY  2
#define RCL_POL_NOMATCH 3 /* preDNAT and untracked programs: no rule decided, go on */

/* struct rcl_pol_cls.flags (on destination port classes) */
#define RCL_POL_F_SPORT 1 /* the program also classifies source ports */

/* The default cell of a program: its most common verdict, stored once. */
#define RCL_POL_ANY_CLASS 0xffffffff
#define RCL_POL_ANY_PORT  0xffff

/* rcl_pol_ep: interface slot (as rcl_ifstate) -> the policy programs of the
 * workload behind it. 16 bytes. prog[0]: its ingress policy (traffic to the
 * pod, tc egress); prog[1]: its egress policy (traffic from the pod, tc
 * ingress). Switching an endpoint to a new program is one aligned 32-bit
 * store per direction. */
struct rcl_pol_ep {
	__u32 ifindex;
	__u32 prog[2];
	__u32 pad;
};

/* rcl_frag: a fragmented IPv4 datagram, as a policy point saw its first
 * fragment -> that fragment's ports (TCP, UDP, SCTP, UDPLite; an ICMP
 * echo's id in both), which its later fragments do not carry. 12 bytes. */
struct rcl_frag_key {
	__u32 src;  /* _be */
	__u32 dst;  /* _be */
	__u16 id;   /* _be the IP identification */
	__u8 proto;
	__u8 pad;
};

/* 4 bytes. */
struct rcl_frag_ports {
	__u16 sport; /* _be */
	__u16 dport; /* _be */
};

/* A class lookup's key: 12 bytes. rcl_pol_exact holds single addresses and
 * single ports; rcl_pol_lpm (prefixed by a length) holds the rest. An address
 * entry has proto and port 0; a port entry has addr 0. */
struct rcl_pol_cls_key {
	__u32 prog;
	__u8  kind;  /* RCL_POL_K_* */
	__u8  proto;
	__u16 port;  /* _be */
	__u32 addr;  /* _be */
};

/* rcl_pol_lpm key: 16 bytes. Prefix lengths count from prog: an address
 * prefix /n is 64 + n, a port prefix /n is 48 + n, "any other protocol" 40. */
struct rcl_pol_lpm_key {
	__u32 prefixlen;
	struct rcl_pol_cls_key k;
};

/* rcl_pol_exact / rcl_pol_lpm value: 8 bytes. */
struct rcl_pol_cls {
	__u32 cls;
	__u32 flags; /* RCL_POL_F_* */
};

/* rcl_pol_verdict key: 12 bytes. */
struct rcl_pol_cell_key {
	__u32 prog;
	__u32 aclass;
	__u16 pclass;
	__u16 sclass;
};

/* rcl_pol_verdict value: 8 bytes. rule: index into the program's rule list
 * (the reconciler names it: tier, policy, rule). */
struct rcl_pol_verdict {
	__u32 rule;
	__u8  action; /* RCL_POL_ALLOW / RCL_POL_DENY */
	__u8  pad[3];
};

/* rcl_pol_hep: interface slot (as rcl_ifstate) -> the policy programs of the
 * host endpoint behind it, one per point where host policy applies (0: none
 * there). 32 bytes. */
#define RCL_HEP_IN      0 /* arriving for the host itself (ingress policy) */
#define RCL_HEP_OUT     1 /* sent by the host itself (egress policy) */
#define RCL_HEP_FWD_IN  2 /* arriving, forwarded (applyOnForward ingress policy) */
#define RCL_HEP_FWD_OUT 3 /* leaving, forwarded (applyOnForward egress policy) */
#define RCL_HEP_PRE     4 /* arriving, before service NAT (preDNAT policy) */
#define RCL_HEP_UNTRACKED_OUT 5 /* leaving, before conntrack (doNotTrack egress policy) */
#define RCL_HEP_PROGS   6
struct rcl_pol_hep {
	__u32 ifindex;
	__u32 prog[RCL_HEP_PROGS];
	__u32 untracked_out_nets; /* as rcl_xdp_ep.nets, for prog[RCL_HEP_UNTRACKED_OUT] */
};

/* rcl_failsafe: failsafe ports, an LPM trie. Prefix lengths count from dir:
 * an entry for any remote address is 32, one with a net /n is 32 + n. */
#define RCL_FS_IN  1 /* failsafeInboundHostPorts: to the host, from addr */
#define RCL_FS_OUT 2 /* failsafeOutboundHostPorts: from the host, to addr */
struct rcl_failsafe_key {
	__u32 prefixlen;
	__u8  dir;
	__u8  proto;
	__u16 port; /* _be */
	__u32 addr; /* _be the remote address */
};

/* rcl_host_ip: _be address -> 1 for every IPv4 address of this node (what
 * "to the host" and "from the host" mean). */

/* rcl_xdp_ep: ifindex -> the untracked (doNotTrack) program of the host
 * endpoint on an interface our XDP program is attached to. 16 bytes. */
struct rcl_xdp_ep {
	__u32 slot; /* the interface's rcl_ifstate slot: where its XDP counters go */
	__u32 prog;
	__u32 nets; /* bit n: the program has RCL_POL_K_NET entries of length /n */
	__u32 pad;
};

/* rcl_xdp_stats: per-CPU, by slot; the XDP program's own counters. */
struct rcl_xdp_stats {
	__u64 dropped;  /* denied by an untracked rule */
	__u64 allowed;  /* allowed untracked: no policy or conntrack after this */
	__u64 failsafe; /* a failsafe port: passed before any untracked rule */
	__u64 passed;   /* no untracked rule decided: on to tc */
};

/* rcl_untracked_drops: per-CPU packets an untracked (doNotTrack) rule
 * denied, by interface slot, program and rule (LRU: a rule of a program
 * long replaced ages out). 16 bytes -> __u64. */
#define RCL_UNTRACKED_IN  1 /* arriving, in XDP */
#define RCL_UNTRACKED_OUT 2 /* leaving, in tc egress */
struct rcl_untracked_key {
	__u32 slot;
	__u32 prog;
	__u32 rule;
	__u8  dir; /* RCL_UNTRACKED_* */
	__u8  pad[3];
};

/* The XDP program leaves this word in the packet's metadata for a packet an
 * untracked rule allowed; tc skips host policy for it. */
#define RCL_XDP_META_UNTRACKED 0x72636c75U

#endif
