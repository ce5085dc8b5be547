"""The program sets under bpf/ and how they hook into the kernel: one place for
program names, hook names, attach types and tc filter conventions."""

from __future__ import annotations

# Program set -> its C source under bpf/ and the BPF program type of its functions.
SOURCES = {"tc": "tc.c", "connect": "connect.c"}
PROG_TYPES = {"tc": "SCHED_CLS", "connect": "CGROUP_SOCK_ADDR"}

# The tc set's functions: two attached per interface, one run by the reconciler
# through BPF_PROG_TEST_RUN (conntrack removal).
TC_PROGRAMS = ("rcl_tc_ingress", "rcl_tc_egress", "rcl_ct_kill_slot")

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
