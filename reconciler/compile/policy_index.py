"""What one policy compile read (reconciler.compile.policy_incremental uses
it), as a value the state store keeps beside the state: plain strings and
tuples, stored with marshal. Its own module, so that loading a stored state
does not import the policy compiler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PolicyIndex:
    """What one policy compile read, for the next to redo only what changed.
    Plain strings and tuples: it is stored beside the state (marshal)."""

    context: str
    inputs: Mapping[str, str]  # resource ref -> digest of its document
    selections: Mapping[str, tuple[str, ...]]  # policy label -> local endpoints it selects

    def as_plain(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "inputs": dict(self.inputs),
            "selections": dict(self.selections),
        }

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> PolicyIndex | None:
        """The index stored as as_plain() made it, or None for anything else."""
        try:
            context, inputs, selections = data["context"], data["inputs"], data["selections"]
        except (KeyError, TypeError):
            return None
        if not (isinstance(context, str) and isinstance(inputs, dict)
                and isinstance(selections, dict)):  # fmt: skip
            return None
        return cls(context, inputs, {k: tuple(v) for k, v in selections.items()})
