"""bpf/maps.c makes every map before a set's parts are compiled side by side;
a map it missed would be created by whichever part came first, the others
racing it to the pin. It includes only the headers that declare maps, so
every declaration must sit in a header it reaches."""

import re
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
DECLARATION = re.compile(r"^\s*(?:BPF_TABLE_PINNED|RCL_SET_MAP)\((.*?)\);", re.M | re.S)
LOCAL_INCLUDE = re.compile(r'^#include "([^"]+)"', re.MULTILINE)


def declared_maps(path: Path) -> set[str]:
    """The maps a file declares: the fourth argument (type, key, value, name,
    ...). Macro definitions start with #define and are not matched."""
    return {m.group(1).split(",")[3].strip() for m in DECLARATION.finditer(path.read_text())}


def reached_from(path: Path) -> set[Path]:
    """`path` and every local header it includes, transitively."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in LOCAL_INCLUDE.findall(current.read_text()):
            todo.append((current.parent / name).resolve())
    return seen


def test_the_declaration_pattern_finds_the_maps_it_should() -> None:
    text_maps = declared_maps(BPF_DIR / "lib" / "nat_maps.h")
    assert {"rcl_ct", "rcl_nat_fe", "rcl_ct_prev", "rcl_ct_prev_n"} <= text_maps
    assert "name" not in declared_maps(BPF_DIR / "lib" / "set_maps.h")


def test_every_map_of_the_datapath_is_made_by_the_maps_compile() -> None:
    sources = [p.resolve() for p in (*BPF_DIR.glob("*.c"), *(BPF_DIR / "lib").glob("*.h"))]
    everywhere = set().union(*(declared_maps(p) for p in sources))
    by_maps_c = set().union(*(declared_maps(p) for p in reached_from(BPF_DIR / "maps.c")))
    assert len(everywhere) > 20
    assert everywhere - by_maps_c == set()


def test_the_maps_compile_reaches_no_datapath_code() -> None:
    """maps.c stays quick: the headers of the datapath's code stay out of it."""
    reached = {p.name for p in reached_from(BPF_DIR / "maps.c")}
    assert reached.isdisjoint({"tc_path.h", "policy.h", "nat.h", "masq.h", "reject.h",
                               "conntrack.h", "policy_lookup.h"})  # fmt: skip
