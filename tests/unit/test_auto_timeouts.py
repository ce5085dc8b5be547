"""A bpfConntrackTimeouts timer set to Auto takes the node's kernel conntrack
timeout, as Felix reads its sysctl; a timer the kernel has no sysctl for,
or a node whose conntrack offers none, keeps Calico's default; a timer
given a duration ignores the kernel's."""

from __future__ import annotations

from reconciler.compile.dataplane import Host, compile_desired
from tests.unit.test_compile import LINKS, res


def globals_of(timers, nf_timeouts):
    felix = res("FelixConfiguration", "default",
                {"bpfEnabled": True, "bpfConntrackTimeouts": timers})  # fmt: skip
    host = Host(tuple(LINKS), nf_timeouts=nf_timeouts)
    desired = compile_desired([felix], "n1", host, "/sys/fs/bpf/x", "src")
    return desired.objects["map/rcl_nat_globals/0"].attrs


KERNEL = {"tcpEstablished": 432000, "tcpSynSent": 120, "tcpFinsSeen": 120, "genericTimeout": 600}


def test_auto_takes_the_kernels_timeout():
    g = globals_of({"tcpEstablished": "Auto", "tcpFinsSeen": "Auto"}, KERNEL)
    assert (g["tcp_established_s"], g["tcp_fin_s"]) == (432000, 120)
    assert g["tcp_syn_sent_s"] == 20  # not Auto: Calico's default, whatever the kernel has


def test_auto_without_a_kernel_timeout_is_calicos_default():
    assert globals_of({"tcpEstablished": "Auto"}, None)["tcp_established_s"] == 3600
    assert globals_of({"tcpEstablished": "Auto"}, {})["tcp_established_s"] == 3600
    # udpTimeout has no sysctl (Felix reads none for it)
    assert globals_of({"udpTimeout": "Auto"}, KERNEL)["udp_s"] == 60


def test_a_duration_ignores_the_kernels():
    assert globals_of({"tcpEstablished": "2h"}, KERNEL)["tcp_established_s"] == 7200


def test_the_kernels_timeouts_are_inputs_of_the_compiled_state():
    """A changed sysctl is a changed host fact: a stored state is not reused for it."""
    assert Host(tuple(LINKS), nf_timeouts=KERNEL).facts()["nf_timeouts"] == KERNEL
