/* Interface state and counters shared by the tc programs.
 * Mirrored in reconciler/datapath/maps/iface_types.py: keep both in step. */
#ifndef RCL_IFACE_TYPES_H
#define RCL_IFACE_TYPES_H

#ifndef RCL_IFSTATE_SIZE
#define RCL_IFSTATE_SIZE 1001 /* slots: bpfMapSizeIfState interfaces and slot 0 */
#endif

/* Role bits of struct rcl_ifstate.flags (reconciler.compile.dataplane.Role). */
#define RCL_IF_WORKLOAD      1
#define RCL_IF_DATA          2
#define RCL_IF_L3            4
#define RCL_IF_HOST_ENDPOINT 8
#define RCL_IF_POLICY        16 /* a workload under policy: rcl_pol_ep names its programs */

/* rcl_ifstate: slot -> what an interface is to us, and its counters.
 * The reconciler gives each managed interface a slot (1, 2, ...) and attaches
 * the interface's tc filters with the slot as their classid, which cls_bpf
 * hands the program in skb->tc_classid: the program indexes an array (a
 * lookup the verifier inlines) instead of hashing the ifindex. The entry names
 * its interface; a slot whose ifindex is not the packet's is not ours. Slot 0
 * is never attached (a filter without classid); test harnesses use it.
 * Per CPU, 56 bytes: the reconciler writes the same flags and ifindex into
 * every CPU's copy, and the datapath counts into its own CPU's copy (no
 * atomics). One lookup a packet gives both. */
struct rcl_ifstate {
	__u32 flags;
	__u32 ifindex;
	__u64 rx_packets;   /* tc ingress: from the interface */
	__u64 rx_bytes;
	__u64 tx_packets;   /* tc egress: to the interface */
	__u64 tx_bytes;
	__u64 dropped;      /* packets we dropped or rejected */
	__u64 nat;          /* packets we NATed (service traffic) */
};

/* rcl_wep_src: a workload interface's slot (as rcl_ifstate's) -> the IPv4
 * networks it may send from (its ipNetworks, and the allowSpoofedSourcePrefixes
 * Felix honours). The entry names its interface, as rcl_ifstate's does.
 * 72 bytes. */
#define RCL_WEP_NETS 8
struct rcl_wep_net {
	__u32 addr; /* _be, host bits clear */
	__u32 mask; /* _be */
};

struct rcl_wep_src {
	__u32 ifindex;
	__u32 count; /* nets in use, from net[0] */
	struct rcl_wep_net net[RCL_WEP_NETS];
};

/* rcl_globals[0]: configuration that is data, not code. 8 bytes. */
struct rcl_globals {
	__u32 log_level;
	__u32 flags; /* RCL_G_* */
};

/* rcl_globals.flags: defaultEndpointToHostAction, for new flows from a
 * workload to one of this node's addresses */
#define RCL_G_EP_TO_HOST_MASK   3
#define RCL_G_EP_TO_HOST_DROP   0
#define RCL_G_EP_TO_HOST_RETURN 1
#define RCL_G_EP_TO_HOST_ACCEPT 2
/* rcl_globals.flags bits 2-3: bpfEnforceRPF, the reverse-path check of what
 * arrives on a host interface (data or host endpoint); 0 checks nothing */
#define RCL_G_RPF_SHIFT    2
#define RCL_G_RPF_MASK     3
#define RCL_G_RPF_DISABLED 0
#define RCL_G_RPF_STRICT   1
#define RCL_G_RPF_LOOSE    2
/* rcl_globals.flags bits 4-5: encapsulation a workload may send (Felix's
 * allowVXLANPacketsFromWorkloads, allowIPIPPacketsFromWorkloads); without
 * its bit, VXLAN (UDP to the port in bits 16-31, host order: Felix's
 * vxlanPort) and IP in IP from a workload are dropped before policy */
#define RCL_G_ALLOW_VXLAN  16
#define RCL_G_ALLOW_IPIP   32
#define RCL_G_VXLAN_PORT_SHIFT 16

#endif
