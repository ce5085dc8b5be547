"""Compile: resources + node + host facts -> DesiredState. Pure, no I/O.

The desired state is a fold of sub-compilers, each a pure function that
returns a Fragment (reconciler.compile.fragment): interfaces, programs,
connect-time load balancing, policy, host protection, and service NAT last
(its index for incremental compiles records the others' warnings and
errors). A configuration whose values would not even encode is refused
before any of them runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.compile import config_limits, ct_scaling
from reconciler.compile.agent import agent_settings
from reconciler.compile.connect_lb import compile_connect_lb
from reconciler.compile.fragment import Fragment, merge
from reconciler.compile.host import DISABLED, NOT_ENABLED, Host
from reconciler.compile.host_policy import compile_host_protection, failsafe_ports
from reconciler.compile.interfaces import compile_interfaces, has_host_endpoints, select
from reconciler.compile.kube_proxy import compile_kube_proxy_cleanup
from reconciler.compile.nat_outgoing import compile_nat_outgoing
from reconciler.compile.policy_objects import compile_policy
from reconciler.compile.programs import compile_programs, programs_for
from reconciler.compile.service_nat import compile_service_nat, with_auto_timeouts
from reconciler.compile.workload_source import workload_sources
from reconciler.config import felix
from reconciler.config.enforcement import not_enforced
from reconciler.config.model import Resource
from reconciler.plan.state import DesiredState, Link


def compile_desired(
    resources: Sequence[Resource],
    node: str,
    host: Host | Sequence[Link],
    bpffs_root: str,
    source_digest: str,
    file_ids: Mapping[str, str] | None = None,
    context: str = "",
    previous: DesiredState | None = None,
) -> DesiredState:
    """The whole dataplane this node should have, as addressed objects.

    With `file_ids` (path -> blob id of every source file) the state carries
    a NatIndex, so that a later change to Services and EndpointSlices alone
    can be applied to it by reconciler.compile.nat_tables.update; `context` names
    every other input (node, links, code) for that index. With `previous`
    (an earlier state this code compiled, for any inputs) the policy
    sub-compiler redoes only what changed since, when it can prove that is
    enough (reconciler.compile.policy_incremental); the state is the same."""
    if not isinstance(host, Host):
        host = Host(tuple(host))
    config = ct_scaling.scaled(felix.effective_config(resources, node), host.ct_floor)
    config = with_auto_timeouts(config, host.nf_timeouts)
    agent = agent_settings(config)
    if not config["bpfEnabled"]:
        said = any(
            r.kind == "FelixConfiguration" and r.name in ("default", f"node.{node}")
            and r.spec.get("bpfEnabled") is False
            for r in resources
        )  # fmt: skip
        return DesiredState(node, False, {}, (DISABLED if said else NOT_ENABLED,), agent=agent)
    limit_errors = config_limits.problems(resources, node, config)
    if limit_errors:  # refused before anything is compiled (a value would not even encode)
        return DesiredState(node, True, {}, (), errors=tuple(limit_errors), agent=agent)
    ignored = tuple(item.render() for item in not_enforced(resources))
    selection = select(resources, node, host.links, config)
    programs = programs_for(bpffs_root, config, source_digest, host.hz)
    failsafe = failsafe_ports(config)
    last = (previous.objects, previous.policy_index) if previous is not None else None
    policy, policy_index = compile_policy(resources, node, selection, failsafe, last)
    fragments: list[Fragment] = [
        compile_interfaces(selection, programs.tc_ref, programs.host_ref),
        compile_programs(config, programs, has_host_endpoints(selection)),
        compile_connect_lb(
            config, programs, host.cgroup_id, host.cgroup_path, host.netns_cookie
        ),
        policy,
        compile_host_protection(failsafe, host.links, policy, programs),
        workload_sources(resources, node, selection, config),
        compile_kube_proxy_cleanup(config),
        compile_nat_outgoing(resources, config),
    ]
    others = merge(fragments)
    nat, index = compile_service_nat(
        resources, node, selection.node_ips, config, file_ids, context, others,
        host.netns_cookie,
    )  # fmt: skip
    state = merge((others, nat))
    build = {
        "flags": list(programs.flags),
        "prog": programs.tc_ref,
        "hash": programs.hash,
        "cgroup": host.cgroup_path,
    }
    return DesiredState(
        node, True, {o.address: o for o in state.objects}, state.warnings, build, state.errors,
        state.tables, state.table_info, index, not_enforced=ignored, policy_index=policy_index,
        health_checks=state.health_checks, agent=agent,
    )  # fmt: skip
