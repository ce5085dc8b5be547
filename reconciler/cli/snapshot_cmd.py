"""`reconcile --snapshot` (a node's observed state as JSON on stdout) and
`reconcile --plan --observed FILE` (the plan against it: no root, no kernel)."""

from __future__ import annotations

import argparse
import json
import sys

from reconciler.cli import render
from reconciler.cli.exit_codes import EXIT_ERROR, EXIT_OK
from reconciler.cli.render import emit_json


def snapshot_cmd(args: argparse.Namespace) -> int:
    from reconciler.cli.commands import _caches, _target
    from reconciler.engine.snapshots import take

    sys.stdout.write(json.dumps(take(_target(args), _caches()), sort_keys=True) + "\n")
    return EXIT_OK


def plan_observed_cmd(args: argparse.Namespace) -> int:
    import dataclasses

    from reconciler.cli.commands import (
        _cache_dir,
        _caches,
        _report_invalid,
        plan_exit_code,
        source_spec,
    )
    from reconciler.config.spec import open_source
    from reconciler.engine.reconcile import InvalidConfig, make_plan
    from reconciler.engine.snapshots import SnapshotError, against
    from reconciler.engine.spec import make_target

    try:
        # the snapshot names the node's namespace and cgroup: this machine's
        # --netns and --cgroup (copied along from a node's options) are not asked
        here = make_target(args.node, args.bpffs_root, args.state_dir, None, _cache_dir(args), None)
        target = against(here, args.observed)
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if getattr(args, "node_source", "") == "--node" and args.node != target.node:
        print(f"error: --node {args.node}: the snapshot {args.observed} is of node "
              f"{target.node} (a plan against it is that node's)", file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    spec = source_spec(args)
    caches = _caches()
    try:
        plan, _, _ = make_plan(
            lambda: open_source(spec, not args.no_cache, sources=caches.sources),
            target,
            True,
            keep_derived=False,
            allow_empty=args.allow_empty,
            caches=caches,
        )
    except InvalidConfig as exc:
        _report_invalid(args, exc)
        return EXIT_ERROR
    plan = dataclasses.replace(plan, source={**plan.source, "spec": spec})
    if args.out:
        plan.dump(args.out)
    if args.json:
        emit_json(plan.as_json())
    else:
        from reconciler.cli.logs import use_color

        taken = target.snapshot.taken_at if target.snapshot is not None else "?"
        print(f"(planned against the snapshot {args.observed} of node {target.node}, {taken})")
        sys.stdout.write(render.render_plan(
            plan, detail=args.detail, color=use_color(args), node_source="the snapshot"
        ))  # fmt: skip
        if args.out:
            print(f"\nSaved the plan to {args.out}. Apply it on node {target.node} with: "
                  f"reconcile --apply --plan-file {args.out}")  # fmt: skip
    return plan_exit_code(plan)
