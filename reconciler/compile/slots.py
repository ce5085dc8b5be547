"""The rcl_ifstate slot each managed interface holds: assigned so that an
apply never moves a live interface, and a compiled state moved to the slots
the kernel holds now. Pure, and light: a no-op plan loads a stored state
and moves it here without the interface compiler (bench/layout_bench.py's
no-op plan over 200 interfaces)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from reconciler.datapath.maps import host_types, policy_types
from reconciler.datapath.maps.iface_types import MAP_IFSTATE, MAP_WEP_SRC
from reconciler.datapath.programs import TC_PARENTS
from reconciler.plan.address import Address
from reconciler.plan.state import DesiredState, ObjKind

DIRECTIONS = tuple(TC_PARENTS)  # a managed interface has a filter of ours in each


def assign_slots(ifindexes: Iterable[int], held: Mapping[int, int], slots: int) -> dict[int, int]:
    """Each managed interface's slot in rcl_ifstate, in [1, slots).

    An interface keeps the slot it holds in the kernel (`held`: ifindex ->
    slot), so an apply never moves a live interface. A new one takes the
    lowest slot nobody holds: a slot whose interface left is cleared by the
    same apply, after the new entries are written. Only when no other slot is
    left does a new interface take such a slot (the drivers clear a slot only
    while it still names the interface that left). The caller has checked
    that the interfaces fit."""
    wanted = sorted(set(ifindexes))
    out: dict[int, int] = {}
    taken: set[int] = set()
    for ifindex in wanted:
        slot = held.get(ifindex)
        if slot is not None and 0 < slot < slots and slot not in taken:
            out[ifindex] = slot
            taken.add(slot)
    held_slots = set(held.values())
    unheld = (s for s in range(1, slots) if s not in held_slots)
    handed_on = iter(sorted(s for s in held_slots if 0 < s < slots and s not in taken))
    for ifindex in wanted:
        if ifindex not in out:
            out[ifindex] = next(unheld, None) or next(handed_on)
    return out


# Per-interface entries of other maps that carry the interface's slot.
_SLOTTED_ENTRIES = (policy_types.MAP_EP, host_types.MAP_HEP, host_types.MAP_XDP_EP, MAP_WEP_SRC)


def keep_slots(desired: DesiredState, held: Mapping[int, int]) -> DesiredState:
    """`desired` with its interfaces' slots assigned for what the kernel holds
    now (`held`, see assign_slots). Compile gives slots as if none were held,
    so it stays a function of the configuration and links alone, and a stored
    state is reused whatever the slots; most often nothing moves and the
    state is returned as it is."""
    prefix = f"{Address.of_map(MAP_IFSTATE)}/"  # its entries' addresses start so
    states = [
        o for a, o in desired.objects.items() if o.kind is ObjKind.ENTRY and a.startswith(prefix)
    ]
    if not states:
        return desired
    size = int(desired.objects[Address.map_text(MAP_IFSTATE)].attrs["max_entries"])
    now = {int(o.attrs["ifindex"]): int(o.attrs["slot"]) for o in states}
    wanted = assign_slots(now, held, size)
    if wanted == now:
        return desired
    objects = dict(desired.objects)
    for state in states:
        slot = wanted[int(state.attrs["ifindex"])]
        name = Address.parse(state.address).key or ""
        moved = (
            state.address,
            *(Address.entry_text(m, name) for m in _SLOTTED_ENTRIES),
            *(Address.tc_text(name, d) for d in DIRECTIONS),
        )
        for address in moved:
            obj = objects.get(address)
            if obj is not None:
                objects[address] = dataclasses.replace(obj, attrs={**obj.attrs, "slot": slot})
    return dataclasses.replace(desired, objects=objects)
