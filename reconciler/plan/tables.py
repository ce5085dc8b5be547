"""Mappings that spare a one-change run from copying or loading 100k entries.

A stored desired state holds 110,000 NAT entries and maps of 10,000 files and
services. A run that changes one service needs a handful of them, so:

- `SortedTable` is a bulk table as stored: two buffers, keys in order, looked
  up by bisection. Loading it costs one read, not 110,000 objects.
- `Lazy` is a stored dict, unmarshalled on first use.
- `Overlay` is a base mapping plus the keys one change set or removed. An
  incremental compile builds overlays instead of copying, and the state cache
  stores only what an overlay adds to the state it was derived from.
"""

from __future__ import annotations

import bisect
import marshal
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def record_pairs(
    keys: bytes, values: bytes, key_size: int, value_size: int
) -> Iterable[tuple[bytes, bytes]]:
    """(key, value) of two buffers of fixed-size records, sliced in one pass
    of list comprehensions (100k+ entries per table at scale). Empty buffers
    are an empty table whatever the sizes say (a stored empty table has none)."""
    if not keys and not values:
        return iter(())
    return zip(
        [keys[i : i + key_size] for i in range(0, len(keys), key_size)],
        [values[i : i + value_size] for i in range(0, len(values), value_size)],
        strict=True,
    )


class _Keys:
    """The i-th fixed-size key of a buffer, as a sequence bisect can search."""

    __slots__ = ("buf", "size")

    def __init__(self, buf: bytes, size: int) -> None:
        self.buf, self.size = buf, size

    def __len__(self) -> int:
        return len(self.buf) // self.size

    def __getitem__(self, i: int) -> bytes:
        return self.buf[i * self.size : (i + 1) * self.size]


class SortedTable(Mapping[bytes, bytes]):
    """Fixed-size keys and values in two buffers, keys in ascending order."""

    def __init__(self, keys: bytes, values: bytes, key_size: int, value_size: int) -> None:
        entries = len(keys) // key_size if key_size > 0 else -1
        if entries < 0 or len(keys) % key_size or len(values) != entries * value_size:
            raise ValueError("buffers do not hold whole entries")
        self._keys, self._values = _Keys(keys, key_size), values
        self._vs = value_size

    @classmethod
    def of(cls, table: Mapping[bytes, bytes]) -> tuple[bytes, bytes, int, int]:
        """The buffers a SortedTable of `table` is made of (for storing it)."""
        if isinstance(table, SortedTable):
            return table.buffers()
        if not table:
            return b"", b"", 1, 0
        ordered = sorted(table)
        key_size, value_size = len(ordered[0]), len(table[ordered[0]])
        if any(len(k) != key_size or len(table[k]) != value_size for k in ordered):
            raise ValueError("entries of different sizes")
        return b"".join(ordered), b"".join([table[k] for k in ordered]), key_size, value_size

    def _index(self, key: object) -> int:
        if not isinstance(key, bytes) or len(key) != self._keys.size:
            return -1
        i = bisect.bisect_left(self._keys, key)
        return i if i < len(self._keys) and self._keys[i] == key else -1

    def __getitem__(self, key: bytes) -> bytes:
        i = self._index(key)
        if i < 0:
            raise KeyError(key)
        return self._values[i * self._vs : (i + 1) * self._vs]

    def __contains__(self, key: object) -> bool:
        return self._index(key) >= 0

    def __iter__(self) -> Iterator[bytes]:
        keys = self._keys
        return (keys[i] for i in range(len(keys)))

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> ItemsView[bytes, bytes]:
        return _Pairs(self, self.pairs)

    def pairs(self) -> Iterable[tuple[bytes, bytes]]:
        """Every entry, sliced in one pass (no lookups)."""
        return record_pairs(self._keys.buf, self._values, self._keys.size, self._vs)

    def buffers(self) -> tuple[bytes, bytes, int, int]:
        return self._keys.buf, self._values, self._keys.size, self._vs


class _Pairs(ItemsView[Any, Any]):
    """An items view whose iteration is a fast pass, not a lookup per key."""

    def __init__(self, mapping: Mapping[Any, Any], pairs: Callable[[], Iterable[Any]]) -> None:
        super().__init__(mapping)
        self._pairs = pairs

    def __iter__(self) -> Iterator[Any]:
        return iter(self._pairs())


class Lazy(Mapping[Any, Any]):
    """A dict stored with marshal, loaded the first time anything asks."""

    def __init__(self, load: Callable[[], dict[Any, Any]]) -> None:
        self._load: Callable[[], dict[Any, Any]] | None = load
        self._data: dict[Any, Any] = {}

    @classmethod
    def marshalled(cls, blob: bytes) -> Lazy:
        return cls(lambda: marshal.loads(blob))

    @property
    def data(self) -> dict[Any, Any]:
        if self._load is not None:
            self._data, self._load = self._load(), None
        return self._data

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


_REMOVED = object()


class Overlay(MutableMapping[K, V]):
    """`base` with some keys set and some removed; base itself is never
    copied or changed. An overlay of an overlay is flattened onto the first
    one's base, so lookups never walk a chain."""

    def __init__(self, base: Mapping[K, V]) -> None:
        if isinstance(base, Overlay):
            self.base: Mapping[K, V] = base.base
            self.delta: dict[K, Any] = dict(base.delta)
        else:
            self.base, self.delta = base, {}

    def __getitem__(self, key: K) -> V:
        value = self.delta.get(key, self)
        if value is self:
            return self.base[key]
        if value is _REMOVED:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        value = self.delta.get(key, self)  # type: ignore[arg-type]
        return key in self.base if value is self else value is not _REMOVED

    def __setitem__(self, key: K, value: V) -> None:
        self.delta[key] = value

    def __delitem__(self, key: K) -> None:
        if key not in self:
            raise KeyError(key)
        self.delta[key] = _REMOVED

    def __iter__(self) -> Iterator[K]:
        delta = self.delta
        for key in self.base:
            if key not in delta:
                yield key
        for key, value in delta.items():
            if value is not _REMOVED:
                yield key

    def items(self) -> ItemsView[K, V]:
        return _Pairs(self, self._pairs)

    def _pairs(self) -> Iterator[tuple[K, V]]:
        delta = self.delta
        for key, value in self.base.items():
            if key not in delta:
                yield key, value
        for key, value in delta.items():
            if value is not _REMOVED:
                yield key, value

    def __len__(self) -> int:
        base = self.base
        added = sum(1 for k, v in self.delta.items() if v is not _REMOVED and k not in base)
        removed = sum(1 for k, v in self.delta.items() if v is _REMOVED and k in base)
        return len(base) + added - removed

    def changes(self) -> tuple[dict[K, V], list[K]]:
        """What this overlay sets and what it removes, against its base."""
        return (
            {k: v for k, v in self.delta.items() if v is not _REMOVED},
            [k for k, v in self.delta.items() if v is _REMOVED],
        )

    @classmethod
    def restored(
        cls, base: Mapping[K, V], changes: Mapping[K, V], removed: list[K]
    ) -> Overlay[K, V]:
        overlay: Overlay[K, V] = cls(base)
        overlay.delta.update(changes)
        overlay.delta.update(dict.fromkeys(removed, _REMOVED))
        return overlay


def over(base: Mapping[K, V], limit: int = 4096) -> MutableMapping[K, V]:
    """A mapping to change that starts as `base`: an Overlay while the changes
    it carries stay few, else a plain copy (so overlays never grow without end)."""
    if isinstance(base, Overlay) and len(base.delta) > limit:
        return dict(base.items())
    return Overlay(base)
