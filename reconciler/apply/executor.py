"""Drivers: carry out one planned change each. Thin, idempotent, kernel-facing.

Each driver returns a word for the apply log: created, updated, deleted or
unchanged. They never decide anything: the plan already did.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler import logsink
from reconciler.datapath import conntrack as ct_table
from reconciler.datapath import ct_handover, parallel_build
from reconciler.datapath import loader as build
from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.parallel_build import SetBuild
from reconciler.datapath.programs import (
    CONNECT_PROGRAMS,
    CT_HANDOVER_SETS,
    FILTER_PREFIX,
    HOOK_ATTACH_TYPES,
    HOST_FILTER_SUFFIX,
    PROG_TYPES,
    TC_FUNCTIONS,
    TC_PARENTS,
    TC_PRIO,
    TC_PROGRAMS,
    XDP_MODES,
    XDP_PROGRAMS,
    XDP_UPDATE_IF_NOEXIST,
)
from reconciler.kernel import bpf as bpfsys
from reconciler.kernel import bpf_links
from reconciler.plan.address import Address, split_prog_ref
from reconciler.plan.diff import Action, Change
from reconciler.plan.state import ObjKind

log = logsink.get(__name__)


class Executor:
    """Applies a plan's changes in order against one bpffs root and netns."""

    def __init__(
        self, root: str, build_info: Mapping[str, Any], netns: str | None, route: Any = None
    ) -> None:
        """`route`: a pyroute2 handle in `netns` to use (the caller keeps and
        closes it) instead of opening one on the first link change."""
        self.root = root
        self.build_info = build_info
        self.netns = netns
        self._fds: dict[str, int] = {}
        self._migrations: dict[str, list[tuple[bytes, bytes | list[bytes]]]] = {}
        self._prev_ct: int | None = None  # the conntrack table a resize replaces
        self._ipr: Any = route
        self._own_route = route is None

    # -- plumbing -------------------------------------------------------
    def close(self) -> None:
        for fd in self._fds.values():
            bpfsys.close(fd)
        self._fds.clear()
        if self._prev_ct is not None:
            bpfsys.close(self._prev_ct)
            self._prev_ct = None
        if self._ipr is not None and self._own_route:
            self._ipr.close()
        self._ipr = None

    def _map_fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            fd = bpfsys.obj_get(str(Path(self.root) / "maps" / name))
            self._fds[name] = fd
        return fd

    def _route(self) -> Any:
        if self._ipr is None:
            # pyroute2 loads only for tc changes: bench/nat_bench.py's
            # one-change apply writes one map entry.
            from reconciler.kernel.pyroute import open_route

            self._ipr = open_route(self.netns)
        return self._ipr

    def run(self, change: Change) -> str:
        handler = {
            ObjKind.PROG: self._prog,
            ObjKind.MAP: self._map,
            ObjKind.ENTRY: self._entry,
            ObjKind.TC: self._tc,
            ObjKind.CGROUP: self._cgroup,
            ObjKind.XDP: self._xdp,
            ObjKind.NETFILTER: self._netfilter,
            ObjKind.IPTABLES: self._iptables,
        }[change.kind]
        return handler(change)

    def _iptables(self, change: Change) -> str:
        """Our natOutgoing chain, in one iptables-nft-restore transaction."""
        from reconciler.datapath.chains import restore_script
        from reconciler.kernel import netfilter

        wanted = None if change.action is Action.DELETE else list((change.after or {})["rules"])
        saved = netfilter.save(self.netns, "nft", "ip", "nat")
        netfilter.restore(self.netns, "nft", "ip", restore_script(saved, wanted))
        return "deleted" if wanted is None else "written"

    def _netfilter(self, change: Change) -> str:
        from reconciler.apply.kube_proxy_cleanup import remove_kube_proxy

        return remove_kube_proxy(self.netns)

    # -- programs -------------------------------------------------------
    def build_ahead(self, changes: Sequence[Change]) -> None:
        """Build the program sets `changes` create side by side, before the
        first of them runs: their builds in order then find them pinned.
        Not in a resize, whose builds bind the old table one by one."""
        if self._prev_ct is not None:
            return
        builds = [
            SetBuild(address.prog_set, address.prog_hash, tuple(_functions(change)),
                     PROG_TYPES[address.prog_set])  # fmt: skip
            for change in changes
            if change.kind is ObjKind.PROG and change.action is Action.CREATE
            and (address := Address.parse(change.address)).prog_hash
        ]
        if not builds:  # (a plan that only removes programs carries no build flags)
            return
        try:
            parallel_build.build_side_by_side(self.root, self.build_info["flags"], builds)
        except Exception as exc:  # noqa: BLE001 - a shortcut: the builds in order follow
            log.warning("building program sets side by side failed (%s); building in order", exc)

    def _prog(self, change: Change) -> str:
        address = Address.parse(change.address)
        prog_set, phash = address.prog_set, address.prog_hash
        if change.action is Action.DELETE:
            target = Path(self.root) / "progs" / (f"{prog_set}-{phash}" if phash else prog_set)
            if prog_set in CT_HANDOVER_SETS and phash:
                # the last old build goes only once its table's entries are
                # carried: a kill before leaves it for the next plan to remove
                ct_handover.release(self.root, leaving=target)
            for pin in target.glob("*"):
                pin.unlink()
            if target.exists():
                target.rmdir()
            return "deleted"
        if change.action is Action.REPLACE:
            build.remove(self.root, prog_set, phash)
        functions = _functions(change)
        build.build(
            self.root,
            prog_set,
            phash,
            self.build_info["flags"],
            functions,
            PROG_TYPES[prog_set],
            prev_ct=self._prev_ct if prog_set in CT_HANDOVER_SETS else None,
        )
        self._fds.clear()  # maps may have been recreated by the build
        self._restore_migrations()
        return "created"

    # -- maps -----------------------------------------------------------
    def _map(self, change: Change) -> str:
        name = Address.parse(change.address).map
        pin = Path(self.root) / "maps" / name
        if change.action is Action.CREATE:
            if name == ct_table.MAP:
                self._adopt_retired_ct(int((change.after or {})["max_entries"]))
            return "created"  # maps are created by the program build that uses them
        other_layout = "layout" in (change.before or {}) and name in entries.CODECS
        if change.action is Action.REPLACE and pin.exists() and not other_layout:
            # (a map of another layout has its entries planned afresh)
            fd = self._map_fd(name)
            info = bpfsys.map_info(fd)
            limit = (change.after or {}).get("max_entries", info.max_entries)
            if name == ct_table.MAP:  # entries hash to other slots in a table of another size
                ct_handover.settle(self.root)
                self._migrations[name] = list(ct_table.migrate(fd, limit))
                if ct_table.current_layout(info):  # the new tc programs reach it meanwhile
                    bpfsys.close(self._fds.pop(name))
                    self._keep_prev_ct(ct_handover.retire(self.root))
                    return "updated"
            else:
                self._migrations[name] = list(bpfsys.map_items(fd))[:limit]
        if name in self._fds:
            bpfsys.close(self._fds.pop(name))
        pin.unlink(missing_ok=True)
        if name == ct_table.MAP and change.action is Action.DELETE:
            ct_handover.forget(self.root)  # no table left to carry a retired one into
        return "deleted" if change.action is Action.DELETE else "updated"

    def _adopt_retired_ct(self, limit: int) -> None:
        """A conntrack table to be made while the table an interrupted resize
        retired is still pinned: the resize goes on from there, its entries
        migrated and the new programs built to reach it (ct_handover)."""
        fd = ct_handover.retired(self.root)
        if fd is None:
            return
        self._migrations[ct_table.MAP] = list(ct_table.migrate(fd, limit))
        self._keep_prev_ct(fd)

    def _keep_prev_ct(self, fd: int) -> None:
        if self._prev_ct is not None:
            bpfsys.close(self._prev_ct)
        self._prev_ct = fd

    def finish(self) -> int | None:
        """After every change of the plan: end a conntrack handover once the
        one build of the tc datapath left is the only one attached
        (ct_handover.release). Returns the entries carried, or None if none
        was going on."""
        return ct_handover.release(self.root)

    def _restore_migrations(self) -> None:
        for name, items in list(self._migrations.items()):
            if not (Path(self.root) / "maps" / name).exists():
                continue
            fd = self._map_fd(name)
            for key, value in items:
                bpfsys.map_update(fd, key, value)  # a per-CPU value: every CPU's, as it was
            del self._migrations[name]

    # -- map entries ----------------------------------------------------
    def _entry(self, change: Change) -> str:
        address = Address.parse(change.address)
        name, text = address.map, address.key or ""
        fd = self._map_fd(name)
        if change.action is Action.DELETE:
            key, _ = entries.encode(name, text, change.before or {})
            if entries.cleared_by_write(name):
                gone = self._clear(fd, name, key, change.before)
            else:
                gone = bpfsys.map_delete(fd, key)
            return "deleted" if gone else "unchanged"
        key, value = entries.encode(name, text, change.after or {})
        if change.action is Action.UPDATE and entries.keeps_kernel_fields(name):
            # from the entry's current key: an array entry may move to another slot
            old_key, _ = entries.encode(name, text, change.before or {})
            current = bpfsys.map_lookup(fd, old_key)
            if current is not None:
                value = entries.updated(name, current, change.after or {})
            bpfsys.map_update(fd, key, value)
            if old_key != key and entries.cleared_by_write(name):
                self._clear(fd, name, old_key, change.before)
            return "updated"
        bpfsys.map_update(fd, key, value)
        return "created" if change.action is Action.CREATE else "updated"

    @staticmethod
    def _clear(fd: int, name: str, key: bytes, before: Mapping[str, Any] | None) -> bool:
        """Empty an array slot, if it still holds what `before` describes."""
        current = bpfsys.map_lookup(fd, key)
        value = None if current is None else entries.cleared(name, current, before or {})
        if value is None:
            return False
        bpfsys.map_update(fd, key, value)
        return True

    # -- cgroup hooks (pinned BPF links) -------------------------------
    def _cgroup(self, change: Change) -> str:
        hook = Address.parse(change.address).hook
        pin = Path(self.root) / "links" / hook
        if change.action is Action.DELETE:
            pin.unlink(missing_ok=True)  # the last reference: the link detaches
            return "deleted"
        after = change.after or {}
        prog_set, phash = split_prog_ref(after["prog"])
        prog_fd = bpfsys.obj_get(
            str(build.set_dir(self.root, prog_set, phash) / CONNECT_PROGRAMS[hook])
        )
        try:
            before = change.before or {}
            if pin.exists() and before.get("cgroup_id") == after["cgroup_id"]:
                link_fd = bpfsys.obj_get(str(pin))
                try:
                    bpf_links.link_update(link_fd, prog_fd)  # atomic swap, no gap
                finally:
                    bpfsys.close(link_fd)
                return "updated"
            pin.unlink(missing_ok=True)
            pin.parent.mkdir(parents=True, exist_ok=True)
            link_fd = bpf_links.link_create(
                prog_fd, self.build_info["cgroup"], HOOK_ATTACH_TYPES[hook]
            )
            try:
                bpfsys.obj_pin(link_fd, str(pin))
            finally:
                bpfsys.close(link_fd)
        finally:
            bpfsys.close(prog_fd)
        return "created" if change.action is Action.CREATE else "updated"

    # -- tc -------------------------------------------------------------
    def _tc(self, change: Change) -> str:
        address = Address.parse(change.address)
        ifname, direction = address.iface, address.direction
        ipr = self._route()
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return "unchanged"  # the interface went away: nothing left to detach
        idx = found[0]
        parent = TC_PARENTS[direction]
        if change.action is Action.DELETE:
            self._detach(ipr, idx, parent)
            return "deleted"
        after = change.after or {}
        prog_ref = after["prog"]
        prog_set, phash = split_prog_ref(prog_ref)
        host = after.get("hook") == "host"
        pin = build.set_dir(self.root, prog_set, phash) / TC_FUNCTIONS[(host, direction)]
        fd = bpfsys.obj_get(str(pin))
        try:
            _ensure_clsact(ipr, idx, ifname)
            ipr.tc(
                "replace-filter",
                "bpf",
                idx,
                ":1",
                fd=fd,
                name=FILTER_PREFIX + prog_ref + (HOST_FILTER_SUFFIX if host else ""),
                parent=parent,
                classid=after["slot"],  # the program reads it as skb->tc_classid
                direct_action=True,
                prio=TC_PRIO,
            )
        finally:
            os.close(fd)
        return "created" if change.action is Action.CREATE else "updated"

    # -- xdp ------------------------------------------------------------
    def _xdp(self, change: Change) -> str:
        """Attach our XDP program natively where the driver can, generically
        otherwise. A new attachment never replaces a program already there
        (someone else's that appeared since the plan): the kernel refuses."""
        ifname = Address.parse(change.address).iface
        ipr = self._route()
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return "unchanged"
        idx = found[0]
        if change.action is Action.DELETE:
            for flags in XDP_MODES.values():
                detach = {"attrs": [("IFLA_XDP_FD", -1), ("IFLA_XDP_FLAGS", flags)]}
                with contextlib.suppress(Exception):
                    ipr.link("set", index=idx, xdp=detach)
            return "deleted"
        prog_set, phash = split_prog_ref((change.after or {})["prog"])
        fd = bpfsys.obj_get(str(build.set_dir(self.root, prog_set, phash) / XDP_PROGRAMS[0]))
        try:
            only_new = XDP_UPDATE_IF_NOEXIST if change.action is Action.CREATE else 0
            error: Exception | None = None
            for flags in XDP_MODES.values():
                attach = {"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags | only_new)]}
                try:
                    ipr.link("set", index=idx, xdp=attach)
                    break
                except Exception as exc:  # noqa: BLE001 - the next mode may work
                    error = exc
            else:
                assert error is not None
                raise error
        finally:
            os.close(fd)
        return "created" if change.action is Action.CREATE else "updated"

    def _detach(self, ipr: Any, idx: int, parent: int) -> None:
        from pyroute2.netlink.exceptions import NetlinkError  # as in _route

        try:
            ipr.tc("del-filter", "bpf", idx, ":1", parent=parent, prio=TC_PRIO)
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.EINVAL):
                raise
        # Remove clsact only when nobody (us or anyone else) has a filter left.
        remaining = 0
        for p in TC_PARENTS.values():
            with contextlib.suppress(NetlinkError):
                remaining += sum(
                    1
                    for m in ipr.get_filters(index=idx, parent=p)
                    if m.get_attr("TCA_OPTIONS") is not None
                )
        if remaining == 0:
            with contextlib.suppress(NetlinkError):
                ipr.tc("del", "clsact", idx)


def _ensure_clsact(ipr: Any, idx: int, ifname: str) -> None:
    """A clsact on the link, made here or there already. EEXIST alone does
    not say it is one: an `ingress` qdisc holds the same handle, and a
    filter of ours must never land on someone else's qdisc (the plan refuses
    such a link; this is for one that appeared since)."""
    from pyroute2.netlink.exceptions import NetlinkError  # as in Executor._route

    try:
        ipr.tc("add", "clsact", idx)
        return
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise
    kinds = {q.get_attr("TCA_KIND") for q in ipr.get_qdiscs(index=idx)
             if q.get("index", idx) == idx}  # fmt: skip
    if "clsact" not in kinds:
        raise OSError(
            errno.EEXIST,
            f"{ifname}: an ingress qdisc that is not ours holds the tc hook where our clsact "
            f"must go; nothing of ours attached; remove it (tc qdisc del dev {ifname} ingress)",
        )


def _functions(change: Change) -> list[str]:
    """The functions a program set's change builds."""
    return list((change.after or {}).get("programs", TC_PROGRAMS))
