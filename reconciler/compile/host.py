"""What compile takes from the node besides resources (Host), and the
warnings that say why a desired state is empty. Apart from
reconciler.compile.dataplane so that the engine can gather host facts and
read a state's warnings without importing every sub-compiler."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from reconciler.plan.state import Link

# Why a state is empty: the config turned the dataplane off, or never turned it on.
DISABLED = "bpfEnabled is false: nothing of ours stays"
NOT_ENABLED = (
    "bpfEnabled is false: no FelixConfiguration (default or this node's) sets it to true; "
    "nothing of ours stays"
)


@dataclass(frozen=True, slots=True)
class Host:
    """Facts about this node's kernel that compile needs, gathered by observe."""

    links: Sequence[Link]
    cgroup_id: int | None = None  # cgroup v2 for connect-time LB; None: none given
    cgroup_path: str = ""
    hz: int | None = None  # the kernel's CONFIG_HZ; None: not known
    netns_cookie: int | None = None  # the node's network namespace; None: not known
    # the least conntrack size (entries) DoubleIfFull asks for
    # (reconciler.compile.ct_scaling); None: none
    ct_floor: int | None = None
    # the kernel conntrack's timeouts (bpfConntrackTimeouts timer -> seconds)
    # that a timer set to Auto takes; None: not read
    nf_timeouts: dict[str, int] | None = None

    def facts(self) -> dict[str, Any]:
        """Every fact but the links, by name: what a snapshot records and
        what a compiled state's inputs name."""
        return {name: getattr(self, name) for name in HOST_FACTS}

    @classmethod
    def of_facts(cls, links: Sequence[Link], facts: Mapping[str, Any]) -> Host:
        """A Host from recorded facts; a fact not recorded (an older
        snapshot) takes its default."""
        return cls(tuple(links), **{name: facts[name] for name in HOST_FACTS if name in facts})


HOST_FACTS = tuple(f.name for f in fields(Host) if f.name != "links")
