"""kube-proxy's leftover rules. In BPF mode, with
bpfKubeProxyIptablesCleanupEnabled (Calico's default), the node wants none
of the chains kube-proxy leaves in netfilter: they would still match
traffic our datapath already handles. Pure: one wanted-state object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.compile.fragment import Fragment
from reconciler.plan.address import KUBE_PROXY_RULES, Address
from reconciler.plan.state import Obj, ObjKind

SETTING = "bpfKubeProxyIptablesCleanupEnabled"


def compile_kube_proxy_cleanup(config: Mapping[str, Any]) -> Fragment:
    if not config.get(SETTING):
        return Fragment()
    address = str(Address.of_netfilter(KUBE_PROXY_RULES))
    return Fragment(objects=(Obj(address, ObjKind.NETFILTER, {"chains": 0}, {"why": SETTING}),))
