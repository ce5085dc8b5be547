"""What one policy compile read (reconciler.compile.policy_incremental uses
it), as a value the state store keeps beside the state: plain strings and
tuples, stored with marshal. Its own module, so that loading a stored state
does not import the policy compiler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PolicyIndex:
    """What one policy compile read, for the next to redo only what changed.
    Plain strings, numbers and containers: it is stored beside the state
    (marshal)."""

    context: str
    inputs: Mapping[str, str]  # resource ref -> digest of its document
    selections: Mapping[str, tuple[str, ...]]  # policy label -> local endpoints it selects
    # peer ref -> what resolution reads of it (policy_model.peer_facts), in
    # the model's order
    peers: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    local: Mapping[str, str] = field(default_factory=dict)  # local endpoint -> interface

    def as_plain(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "inputs": dict(self.inputs),
            "selections": dict(self.selections),
            "peers": dict(self.peers),
            "local": dict(self.local),
        }

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> PolicyIndex | None:
        """The index stored as as_plain() made it, or None for anything else."""
        try:
            context, inputs, selections = data["context"], data["inputs"], data["selections"]
            peers, local = data["peers"], data["local"]
        except (KeyError, TypeError):
            return None
        if not isinstance(context, str) or not all(
            isinstance(d, dict) for d in (inputs, selections, peers, local)
        ):
            return None
        return cls(
            context,
            inputs,
            {k: tuple(v) for k, v in selections.items()},
            {k: tuple(v) for k, v in peers.items()},
            local,
        )
