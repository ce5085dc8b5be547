"""What FelixConfiguration says about the agent itself: where `--watch`
serves Prometheus metrics, health probes and kube-proxy's health check,
which process metrics it exports beside its own, and how much it logs. Pure: Felix's fields (with
Calico's defaults, reconciler.config.felix) in, one value out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.config.enforcement import METRICS_TLS_FIELDS

# logSeverityScreen -> a Python logging level name. Python has no TRACE
# (DEBUG is its finest) and calls FATAL CRITICAL.
LOG_LEVELS: Mapping[str, str] = {
    "trace": "DEBUG",
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "error": "ERROR",
    "fatal": "CRITICAL",
}


@dataclass(frozen=True, slots=True)
class Listen:
    """An address to listen on in the node's network namespace."""

    host: str  # "" = every address of the node
    port: int

    def render(self) -> str:
        host = self.host or "*"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AgentSettings:
    metrics: Listen | None = None  # prometheusMetricsEnabled
    health: Listen | None = None  # healthEnabled: /liveness and /readiness
    # bpfKubeProxyHealthzPort: kube-proxy's /healthz and /livez (BPF mode only)
    proxy_health: Listen | None = None
    process_metrics: bool = True  # prometheusProcessMetricsEnabled: process_*
    runtime_metrics: bool = True  # prometheusGoMetricsEnabled: the runtime's own (python_*)
    log_level: str = "INFO"  # logSeverityScreen


def metrics_over_tls(config: Mapping[str, Any]) -> bool:
    return any(config.get(name) for name in METRICS_TLS_FIELDS)


def agent_settings(config: Mapping[str, Any]) -> AgentSettings:
    """The agent's settings from an effective FelixConfiguration."""
    metrics = None
    if config.get("prometheusMetricsEnabled") and not metrics_over_tls(config):
        metrics = Listen(str(config["prometheusMetricsHost"]), int(config["prometheusMetricsPort"]))
    health = None
    if config.get("healthEnabled"):
        health = Listen(str(config["healthHost"]), int(config["healthPort"]))
    proxy_health = None
    if config.get("bpfEnabled") and config.get("bpfKubeProxyHealthzPort"):
        proxy_health = Listen("", int(config["bpfKubeProxyHealthzPort"]))
    level = LOG_LEVELS.get(str(config.get("logSeverityScreen", "Info")).lower(), "INFO")
    return AgentSettings(
        metrics=metrics,
        health=health,
        proxy_health=proxy_health,
        process_metrics=bool(config["prometheusProcessMetricsEnabled"]),
        runtime_metrics=bool(config["prometheusGoMetricsEnabled"]),
        log_level=level,
    )
