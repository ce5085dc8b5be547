"""Prometheus metrics of a watching node (`--watch --metrics-addr`), with
prometheus_client on a registry of our own.

Pass metrics are updated as passes end; what the kernel holds (owned
objects, map fill, the datapath's counters) is read when scraped, so a
scrape always sees the kernel as it is."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.engine.history import BLOCKED, PassRecord
from reconciler.engine.reconcile import Target
from reconciler.gitops.probes import Probes
from reconciler.gitops.triggers import split_addr
from reconciler.source_identity import identity_commit

log = logging.getLogger(__name__)
NS = "calico_reconciler"
RESULTS = ("applied", "repaired", "no-op", "drift", "planned", BLOCKED, "failed")
# Results of a pass that did not leave the node converged to its source,
# counted by consecutive_failures (a blocked one backs nothing off, but the
# node does not enforce all of its policy: alerts on it must fire).
NOT_CONVERGED = frozenset({"failed", BLOCKED})


class _KernelCollector(Collector):
    def __init__(self, target: Target) -> None:
        self.target = target
        self.lock = threading.Lock()  # one kernel read at a time

    def collect(self) -> Iterator[Any]:
        from reconciler.engine.node_stats import node_stats

        try:
            with self.lock:
                stats = node_stats(self.target)
        except Exception as exc:  # noqa: BLE001 - a scrape must not kill the server
            log.warning("metrics: cannot read the kernel: %s", exc)
            return
        owned = GaugeMetricFamily(f"{NS}_owned_objects", "Objects we own, by kind", labels=["kind"])
        for kind, n in sorted(stats.get("owned", {}).items()):
            owned.add_metric([kind], n)
        yield owned
        entries = GaugeMetricFamily(f"{NS}_map_entries", "Entries in a map", labels=["map"])
        size = GaugeMetricFamily(f"{NS}_map_max_entries", "A map's capacity", labels=["map"])
        fill = GaugeMetricFamily(
            f"{NS}_map_fill_ratio", "Entries over capacity (0..1)", labels=["map"]
        )
        for name, m in sorted(stats.get("maps", {}).items()):
            entries.add_metric([name], m["entries"])
            size.add_metric([name], m["max_entries"])
            fill.add_metric([name], m["entries"] / m["max_entries"] if m["max_entries"] else 0.0)
        yield from (entries, size, fill)
        packets = CounterMetricFamily(
            f"{NS}_interface_packets",
            "Packets seen by the datapath",
            labels=["interface", "direction"],
        )
        octets = CounterMetricFamily(
            f"{NS}_interface_bytes", "Bytes seen by the datapath", labels=["interface", "direction"]
        )
        nat = CounterMetricFamily(
            f"{NS}_interface_nat", "Packets service-NATed", labels=["interface"]
        )
        dropped = CounterMetricFamily(
            f"{NS}_interface_dropped", "Packets dropped", labels=["interface"]
        )
        for iface, c in sorted(stats.get("counters", {}).items()):
            packets.add_metric([iface, "rx"], c.get("rx_packets", 0))
            packets.add_metric([iface, "tx"], c.get("tx_packets", 0))
            octets.add_metric([iface, "rx"], c.get("rx_bytes", 0))
            octets.add_metric([iface, "tx"], c.get("tx_bytes", 0))
            nat.add_metric([iface], c.get("nat", 0))
            dropped.add_metric([iface], c.get("dropped", 0))
        yield from (packets, octets, nat, dropped)
        service = CounterMetricFamily(
            f"{NS}_service_nat", "Service NAT events by reason", labels=["reason"]
        )
        for reason, n in sorted(stats.get("service_nat", {}).items()):
            service.add_metric([reason], n)
        yield service
        rpf = CounterMetricFamily(
            f"{NS}_rpf_dropped",
            "Packets from a host interface whose source failed the reverse-path check "
            "(bpfEnforceRPF)",
        )
        rpf.add_metric([], stats.get("rpf_dropped", 0))
        yield rpf
        xdp = CounterMetricFamily(
            f"{NS}_xdp_packets",
            "Packets our XDP program judged on a host endpoint, by outcome "
            "(dropped/allowed by an untracked rule, failsafe, passed on to tc)",
            labels=["interface", "result"],
        )
        for iface, c in sorted(stats.get("xdp", {}).items()):
            for result, n in sorted(c.items()):
                xdp.add_metric([iface, result], n)
        untracked = CounterMetricFamily(
            f"{NS}_untracked_dropped",
            "Packets an untracked (doNotTrack) rule denied, by interface, direction "
            "(in: XDP, out: tc egress), policy program and rule index",
            labels=["interface", "direction", "program", "rule"],
        )
        for d in stats.get("untracked_drops", []):
            labels = [d["interface"], d["direction"], d["program"], str(d["rule"])]
            untracked.add_metric(labels, d["packets"])
        yield from (xdp, untracked)


class Metrics:
    def __init__(self, target: Target) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._runtime: dict[str, list[Any]] = {}  # export_runtime's collectors
        r = self.registry
        self.duration = Histogram(
            f"{NS}_reconcile_duration_seconds",
            "How long a reconcile pass took",
            ["result"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.results = Counter(
            f"{NS}_reconciles", "Reconcile passes by result", ["result"], registry=r
        )
        for result in RESULTS:
            self.results.labels(result)
        self.drift = Counter(
            f"{NS}_drift_events", "Objects found different from the applied source", registry=r
        )
        self.failing = Gauge(
            f"{NS}_consecutive_failures",
            "Passes since the last one that converged the node (failed or blocked ones)",
            registry=r,
        )
        self.applied = Info(f"{NS}_applied", "The source the node is converged to", registry=r)
        self.last_success = Gauge(
            f"{NS}_last_success_timestamp_seconds", "When a pass last succeeded", registry=r
        )
        self.fetch_failures = Counter(
            f"{NS}_fetch_failures", "Fetches of the followed repository that failed", registry=r
        )
        self.last_fetch = Gauge(
            f"{NS}_last_fetch_success_timestamp_seconds",
            "When a fetch of the followed repository last succeeded",
            registry=r,
        )
        self.health_local = Gauge(
            f"{NS}_service_health_local_endpoints",
            "Ready endpoints on this node, as a healthCheckNodePort reports them",
            ["service", "port"],
            registry=r,
        )
        self.health_ok = Gauge(
            f"{NS}_service_health_ok",
            "1 while a healthCheckNodePort answers 200 (and listens), else 0",
            ["service", "port"],
            registry=r,
        )
        r.register(_KernelCollector(target))
        self.failures = 0

    def observe_health(self, checks: list[dict[str, Any]]) -> None:
        """The health checks the watcher answers now (ServiceHealth.report)."""
        self.health_local.clear()
        self.health_ok.clear()
        for check in checks:
            labels = (str(check["service"]), str(check["port"]))
            self.health_local.labels(*labels).set(check["local_endpoints"])
            ok = check["status"] == 200 and check["listening"]
            self.health_ok.labels(*labels).set(1 if ok else 0)

    def observe_fetch(self, error: str) -> None:
        """A fetch of the followed repository ended: `error` says why it
        failed ("": fetched)."""
        import time

        if error:
            self.fetch_failures.inc()
        else:
            self.last_fetch.set(time.time())

    def observe_pass(self, record: PassRecord) -> None:
        import time

        self.duration.labels(record.result).observe(record.duration_s)
        self.results.labels(record.result).inc()
        self.drift.inc(len(record.drift))
        if record.result in NOT_CONVERGED:
            self.failures += 1
        else:
            self.failures = 0
            self.last_success.set(time.time())
        self.failing.set(self.failures)
        source = record.held if record.result == "failed" else record.source
        if source:
            self.applied.info({"source": source, "commit": identity_commit(source) or ""})

    def app(self) -> Any:
        """The metrics as a WSGI application."""
        from prometheus_client import make_wsgi_app

        return make_wsgi_app(self.registry)

    def export_runtime(self, process: bool, runtime: bool) -> None:
        """Export the process's own metrics (process_*: CPU, memory, file
        descriptors) and the runtime's (python_*: interpreter, garbage
        collector) beside ours, or stop."""
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

        r = self.registry
        for name, on, make in (
            ("process", process, lambda: [ProcessCollector(registry=r)]),
            ("runtime", runtime, lambda: [PlatformCollector(registry=r), GCCollector(registry=r)]),
        ):  # each registers itself with r as it is made
            have = self._runtime.get(name)
            if on and have is None:
                self._runtime[name] = make()
            elif not on and have is not None:
                for collector in self._runtime.pop(name):
                    r.unregister(collector)

    def serve(self, addr: str, probes: Probes | None = None) -> Any:
        """Serve the metrics at `addr` (every path but the probes'), and with
        `probes` /liveness and /readiness, in a daemon thread; returns the
        server."""
        from reconciler.gitops.listeners import make_app, open_server

        host, port = split_addr(addr)
        return open_server(host, port, make_app(self.app(), probes))
