"""`make bench`: every benchmark, figures printed and saved under bench/out/."""

from __future__ import annotations

import sys

from bench import hostile_bench, plan_bench, validate_bench


def main() -> int:
    print("Benchmarks (see bench/RESULTS.md for recorded figures)")
    validate_bench.main()
    hostile_bench.main()
    plan_bench.main()
    from bench import nat_bench

    quick = "--quick" in sys.argv
    nat_bench.main(quick=quick)
    from bench import policy_bench

    policy_bench.main()
    from bench import host_bench

    host_bench.main()
    from bench import gitops_bench

    gitops_bench.main(quick=quick)
    from bench import layout_bench

    layout_bench.main()
    from bench import resize_bench

    resize_bench.main(quick=quick)
    from bench import build_bench

    build_bench.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
