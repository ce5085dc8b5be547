"""One part of a program set, compiled in a child process while the build
that started it compiles another (loader.build).

`python -m reconciler.datapath.part_build JSON` (children.py) waits until
the build has made the maps, then compiles its part and pins its programs
in the build's directory. A failure is the build's to report: it compiles
that part again itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from reconciler.datapath import loader
from reconciler.datapath.children import held_until_released
from reconciler.procs import die_with_parent


def main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[0])
    die_with_parent(spec["parent"])
    if not held_until_released():
        return 1  # the build gave up before the maps were made
    loader.build_part(spec["root"], spec["set_dir"], spec["prog_set"], spec["flags"],
                      spec["functions"], spec["part"], spec["prog_type"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
