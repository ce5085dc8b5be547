/* Network policy maps' types. Mirrored in reconciler/policy_layout.py;
 * tests/kernel/test_policy_layout.py checks sizes and offsets against what bcc
 * compiles. "_be" = network byte order. */
#ifndef RCL_POLICY_TYPES_H
#define RCL_POLICY_TYPES_H

/* struct rcl_pol_cls_key.kind: which dimension a class entry belongs to */
#define RCL_POL_K_ADDR  0 /* the remote address */
#define RCL_POL_K_DPORT 1 /* protocol and destination port (ICMP: type << 8 | code) */
#define RCL_POL_K_SPORT 2 /* protocol and source port */

/* struct rcl_pol_verdict.action */
#define RCL_POL_ALLOW 1
#define RCL_POL_DENY  2

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

#endif
