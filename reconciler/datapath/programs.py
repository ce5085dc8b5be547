"""The program sets under bpf/ and how they hook into the kernel: one place for
program names, hook names, attach types and tc filter conventions."""

from __future__ import annotations

# Program set -> its C source under bpf/ and the BPF program type of its functions.
SOURCES = {"tc": "tc.c", "host": "tc_host.c", "connect": "connect.c", "xdp": "xdp.c"}
PROG_TYPES = {"tc": "SCHED_CLS", "host": "SCHED_CLS", "connect": "CGROUP_SOCK_ADDR", "xdp": "XDP"}

# The xdp set: attached to host endpoints with untracked (doNotTrack) policy.
XDP_PROGRAMS = ("rcl_xdp",)
# Our XDP program is known by this prefix of its kernel name and by being the
# program pinned in one of our sets; any other XDP program is foreign.
XDP_NAME_PREFIX = "rcl_"
# Attach modes: native (the driver's) where it works, generic (skb) otherwise.
XDP_MODES = {"native": 1 << 2, "generic": 1 << 1}  # XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE
XDP_UPDATE_IF_NOEXIST = 1 << 0

# The tc set's functions: two attached per workload or data interface, the
# four they tail-call (a new flow's verdict, a rejected packet's ICMP error,
# masquerade: a flow's way out and its replies' way back, service NAT for a
# later IPv4 fragment), and three run by
# the reconciler through
# BPF_PROG_TEST_RUN (conntrack removal, the conntrack handover at the end of
# a resize, and --explain --kernel).
TC_PROGRAMS = (
    "rcl_tc_ingress",
    "rcl_tc_egress",
    "rcl_tc_judge",
    "rcl_tc_reject",
    "rcl_tc_masq",
    "rcl_tc_frag",
    "rcl_ct_kill_slot",
    "rcl_ct_adopt_slot",
    "rcl_pol_test",
)
# The host set's functions, attached to host endpoints: built only on a node
# that has them (bpf/tc_host.c), over the tc set's maps.
HOST_PROGRAMS = (
    "rcl_tc_host_ingress",
    "rcl_tc_host_egress",
    "rcl_tc_host_judge",
    "rcl_tc_host_reject",
    "rcl_tc_host_masq",
    "rcl_tc_host_frag",
)
# A set's tail-call table (a BPF_PROG_ARRAY of the set's own functions, by
# index), pinned in the set's directory beside its programs by the loader.
JUMP_TABLES = {
    "tc": (
        "rcl_tc_jumps",
        ("rcl_tc_judge", "rcl_tc_reject", "rcl_tc_masq", "rcl_tc_ingress", "rcl_tc_frag"),
    ),
    "host": (
        "rcl_tc_jumps",
        (
            "rcl_tc_host_judge",
            "rcl_tc_host_reject",
            "rcl_tc_host_masq",
            "rcl_tc_host_ingress",
            "rcl_tc_host_frag",
        ),
    ),
}
# Sets the loader may compile in parts side by side when a second CPU is
# free (reconciler/datapath/loader.py): the functions of each part, the
# first compiled by the building process, the others by children. Balanced
# by compile and verifier time: the ingress program against the three the
# set's programs tail-call or attach beside it.
BUILD_PARTS = {
    "tc": (
        ("rcl_tc_ingress", "rcl_tc_reject", "rcl_tc_frag", "rcl_ct_kill_slot",
         "rcl_ct_adopt_slot", "rcl_pol_test"),
        ("rcl_tc_judge", "rcl_tc_masq", "rcl_tc_egress"),
    ),
    "host": (
        ("rcl_tc_host_ingress", "rcl_tc_host_reject", "rcl_tc_host_frag"),
        ("rcl_tc_host_judge", "rcl_tc_host_masq", "rcl_tc_host_egress"),
    ),
}
# Maps of a set's own, pinned in its directory beside its programs
# (bpf/lib/set_maps.h): its tail-call table, a resize's reference to the old
# conntrack table, and per-CPU scratch its programs share.
SET_MAPS = ("rcl_tc_jumps", "rcl_ct_prev", "rcl_ct_prev_n", "rcl_pol_scratch", "rcl_rpf_seen")
# Sets whose source holds the conntrack table, and with it the reference to the
# previous one during a resize (bpf/lib/conntrack.h rcl_ct_prev): the loader
# pins that map of maps and its bucket count in the set's directory.
CT_PREV_SETS = ("tc", "host", "connect")
# Sets a resize builds with the previous table (the tc datapath's sets): their
# programs find and write it until the handover ends (ct_handover.release).
CT_HANDOVER_SETS = ("tc", "host")
CT_PREV_PINS = ("rcl_ct_prev", "rcl_ct_prev_n")
# Sets whose compile is long (the tc datapath inlined whole into each entry
# point; the others are small): two of them to build are worth building side
# by side (reconciler/datapath/parallel_build.py).
LONG_BUILDS = ("tc", "host")

# The tc function attached in each direction, by the interface's kind: host
# endpoints run the host set's programs, with host endpoint policy.
TC_FUNCTIONS = {
    (False, "ingress"): "rcl_tc_ingress",
    (False, "egress"): "rcl_tc_egress",
    (True, "ingress"): "rcl_tc_host_ingress",
    (True, "egress"): "rcl_tc_host_egress",
}
# A host endpoint's filters carry this after the program reference in their name.
HOST_FILTER_SUFFIX = "/host"

# Cgroup hook -> the connect set's function attached there.
CONNECT_PROGRAMS = {
    "connect4": "rcl_connect4",
    "sendmsg4": "rcl_sendmsg4",
    "recvmsg4": "rcl_recvmsg4",
}
# Cgroup hook -> enum bpf_attach_type (kernel UAPI): BPF_CGROUP_INET4_CONNECT,
# BPF_CGROUP_UDP4_SENDMSG, BPF_CGROUP_UDP4_RECVMSG; for bpf_link_create.
HOOK_ATTACH_TYPES = {"connect4": 10, "sendmsg4": 14, "recvmsg4": 19}
# Function -> its attach type: sock_addr programs name their hook at load.
LOAD_ATTACH_TYPES = {fn: HOOK_ATTACH_TYPES[hook] for hook, fn in CONNECT_PROGRAMS.items()}

# Our tc clsact filters: named FILTER_PREFIX + program reference, at TC_PRIO.
# Anything else on an interface is not ours.
FILTER_PREFIX = "rcl:"
TC_PRIO = 0x7A00
TC_PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
