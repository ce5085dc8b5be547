"""What every map codec is made of: a codec's two directions, the attributes
it speaks, and what decoding needs besides the bytes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Attrs = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """What decoding needs besides the bytes: interface names by index."""

    ifnames: Mapping[int, str]

    def ifname(self, ifindex: int) -> str:
        return self.ifnames.get(ifindex, f"#{ifindex}")  # '#n': that interface is gone


@dataclass(frozen=True, slots=True)
class Codec:
    # None for a key that holds no entry (an array's unused slot)
    decode: Callable[[bytes, Any, Context], tuple[str, Attrs] | None]
    encode: Callable[[str, Mapping[str, Any]], tuple[bytes, bytes]]
    # The value an update writes, from the one in the kernel: for entries whose
    # value holds fields the datapath owns (counters), which an update keeps.
    update: Callable[[Any, Mapping[str, Any]], Any] | None = None
    # For an array (whose keys cannot be deleted): the value that empties the
    # entry described by `before`, from the one in the kernel; None when the
    # slot holds something else by now (it was handed on), to be left alone.
    clear: Callable[[Any, Mapping[str, Any]], Any] | None = None
