"""The netfilter chain of ours (IPPool natOutgoing, reconciler.compile.nat_outgoing):
its name in the nat table, and the rule in POSTROUTING that jumps to it, as
iptables-save prints them. Only rules so named are ever read or changed."""

NAT_OUTGOING_CHAIN = "RCL-NAT-OUTGOING"
NAT_OUTGOING_JUMP = (
    f'-A POSTROUTING -m comment --comment "calico-reconciler: natOutgoing" -j {NAT_OUTGOING_CHAIN}'
)


def ours(saved: str, chain: str = NAT_OUTGOING_CHAIN) -> list[str]:
    """The rules of `chain` in iptables-save's text of a table, and every
    rule elsewhere that jumps to it, in the order printed."""
    return _ours(saved, chain, in_place=False)


def ours_in_place(saved: str, chain: str = NAT_OUTGOING_CHAIN) -> list[str]:
    """ours(), a jump that is not the first rule of its chain marked with
    how many rules come before it: they see the packet first (an ACCEPT
    there would keep it from our chain), so such a jump is not the rule
    wanted, and the plan puts it back first."""
    return _ours(saved, chain, in_place=True)


def _ours(saved: str, chain: str, in_place: bool) -> list[str]:
    jump = f" -j {chain}"
    before: dict[str, int] = {}  # rules seen so far, per chain
    out = []
    for line in saved.splitlines():
        if not line.startswith("-A "):
            continue
        where = line.split(" ", 2)[1]
        if where == chain:
            out.append(line)
        elif line.endswith(jump):
            ahead = before.get(where, 0) if in_place else 0
            out.append(line if ahead == 0 else f"{line}  # after {ahead} rule(s) of {where}")
        before[where] = before.get(where, 0) + 1
    return out


def restore_script(saved: str, wanted: list[str] | None, chain: str = NAT_OUTGOING_CHAIN) -> str:
    """An iptables-restore script (for `--noflush`, one transaction) that
    takes the nat table `saved` describes to `wanted` (rules as `ours`
    lists them; None: the chain and its jumps gone): every jump to the chain
    deleted, the chain flushed and refilled, the wanted jumps inserted first
    in their chains."""
    own = f"-A {chain} "
    lines = ["*nat", *("-D " + rule[3:] for rule in ours(saved, chain) if not rule.startswith(own))]
    exists = any(line.startswith(f":{chain} ") for line in saved.splitlines())
    if wanted is None:
        lines += [f":{chain} - [0:0]", f"-X {chain}"] if exists else []
    else:
        lines.append(f":{chain} - [0:0]")
        for rule in wanted:
            _, where, rest = rule.split(" ", 2)
            lines.append(rule if where == chain else f"-I {where} 1 {rest}")
    return "\n".join([*lines, "COMMIT", ""])
