/* The policy tables the tc and XDP programs share, pinned under
 * RCL_MAPS_DIR: endpoints' programs, the class and verdict tables, failsafe
 * ports, this node's addresses and the untracked counters. Declarations
 * only, so that bpf/maps.c makes them without compiling the datapath. */
#ifndef RCL_POLICY_MAPS_H
#define RCL_POLICY_MAPS_H

#include "iface_types.h"
#include "policy_types.h"

#ifndef RCL_POL_EXACT_SIZE
#define RCL_POL_EXACT_SIZE 262144
#endif
#ifndef RCL_POL_LPM_SIZE
#define RCL_POL_LPM_SIZE 65536
#endif
#ifndef RCL_POL_VERDICT_SIZE
#define RCL_POL_VERDICT_SIZE 262144
#endif
#define RCL_FAILSAFE_SIZE 1024
#define RCL_HOST_IP_SIZE 1024
#define RCL_XDP_EP_SIZE 1024
#define RCL_UNTRACKED_DROPS_SIZE 16384

BPF_TABLE_PINNED("array", __u32, struct rcl_pol_ep, rcl_pol_ep, RCL_IFSTATE_SIZE,
		 RCL_MAPS_DIR "/rcl_pol_ep");
BPF_TABLE_PINNED("array", __u32, struct rcl_pol_hep, rcl_pol_hep, RCL_IFSTATE_SIZE,
		 RCL_MAPS_DIR "/rcl_pol_hep");
BPF_TABLE_PINNED("hash", struct rcl_pol_cls_key, struct rcl_pol_cls, rcl_pol_exact,
		 RCL_POL_EXACT_SIZE, RCL_MAPS_DIR "/rcl_pol_exact");
BPF_TABLE_PINNED("lpm_trie", struct rcl_pol_lpm_key, struct rcl_pol_cls, rcl_pol_lpm,
		 RCL_POL_LPM_SIZE, RCL_MAPS_DIR "/rcl_pol_lpm", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct rcl_pol_cell_key, struct rcl_pol_verdict, rcl_pol_verdict,
		 RCL_POL_VERDICT_SIZE, RCL_MAPS_DIR "/rcl_pol_verdict");
BPF_TABLE_PINNED("lpm_trie", struct rcl_failsafe_key, __u32, rcl_failsafe, RCL_FAILSAFE_SIZE,
		 RCL_MAPS_DIR "/rcl_failsafe", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", __u32, __u32, rcl_host_ip, RCL_HOST_IP_SIZE,
		 RCL_MAPS_DIR "/rcl_host_ip");
/* The XDP program's (bpf/xdp.c); declared here so that either set creates them. */
BPF_TABLE_PINNED("hash", __u32, struct rcl_xdp_ep, rcl_xdp_ep, RCL_XDP_EP_SIZE,
		 RCL_MAPS_DIR "/rcl_xdp_ep");
BPF_TABLE_PINNED("percpu_array", __u32, struct rcl_xdp_stats, rcl_xdp_stats, RCL_IFSTATE_SIZE,
		 RCL_MAPS_DIR "/rcl_xdp_stats");
BPF_TABLE_PINNED("lru_percpu_hash", struct rcl_untracked_key, __u64, rcl_untracked_drops,
		 RCL_UNTRACKED_DROPS_SIZE, RCL_MAPS_DIR "/rcl_untracked_drops");

#endif
