"""Resources as loaded from the config repository."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.config.diagnostics import Path

CALICO_API = "projectcalico.org/v3"

# kind -> the apiVersion it must carry
KINDS: Mapping[str, str] = {
    "FelixConfiguration": CALICO_API,
    "IPPool": CALICO_API,
    "GlobalNetworkPolicy": CALICO_API,
    "NetworkPolicy": CALICO_API,
    "GlobalNetworkSet": CALICO_API,
    "NetworkSet": CALICO_API,
    "HostEndpoint": CALICO_API,
    "WorkloadEndpoint": CALICO_API,
    "Profile": CALICO_API,
    "Tier": CALICO_API,
    "Service": "v1",
    "EndpointSlice": "discovery.k8s.io/v1",
    "Namespace": "v1",
    "ServiceAccount": "v1",
}
# Kinds of Calico's v3 API that this node does not act on: accepted where
# they appear (a repository holds the whole cluster's config), not validated
# beyond being documents, and reported as not enforced.
CALICO_ONLY_KINDS = frozenset(
    {
        "BGPConfiguration",
        "BGPFilter",
        "BGPPeer",
        "BlockAffinity",
        "CalicoNodeStatus",
        "ClusterInformation",
        "IPAMConfiguration",
        "IPReservation",
        "KubeControllersConfiguration",
        "Node",
        "StagedGlobalNetworkPolicy",
        "StagedKubernetesNetworkPolicy",
        "StagedNetworkPolicy",
    }
)
NAMESPACED_KINDS = frozenset(
    {
        "NetworkPolicy",
        "NetworkSet",
        "WorkloadEndpoint",
        "Service",
        "EndpointSlice",
        "ServiceAccount",
    }
)


@dataclass(frozen=True, slots=True)
class Resource:
    """One YAML document that is a known kind.

    `body` is the whole document as plain JSON-like values; `lines` maps a
    path inside it to the 1-based line where that node starts.
    """

    kind: str
    name: str
    namespace: str | None
    body: Mapping[str, Any]
    file: str
    line: int
    lines: Mapping[Path, int] = field(default_factory=dict, compare=False, hash=False)

    @property
    def ref(self) -> str:
        """Human identity used in diagnostics and plans: Kind/name or Kind/ns/name."""
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, Mapping) else {}

    @property
    def labels(self) -> Mapping[str, str]:
        meta = self.body.get("metadata")
        labels = meta.get("labels") if isinstance(meta, Mapping) else None
        return labels if isinstance(labels, Mapping) else {}

    def line_of(self, path: Path) -> int:
        """Line of the deepest node on `path` that exists (falls back to the document)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return self.line
