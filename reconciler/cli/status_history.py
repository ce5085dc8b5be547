"""`--status`: the reconcile history and the watcher's state beside what the
kernel holds (engine.history keeps both under the state directory)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.engine import history


def add_history(status: dict[str, Any], state_dir: Path) -> dict[str, Any]:
    """`status` with `history` (the last reconciles, newest first), `watch`
    (the watcher's last word, or None) and `drift` (what its last pass found
    different from the source it holds the node to)."""
    # newest first by when each began (they are written as they end, and a
    # one-shot apply can end inside a watcher's pass); within one second (the
    # stamps' resolution), the one written later first
    loaded = history.load(state_dir)
    order = sorted(range(len(loaded)), key=lambda i: (str(loaded[i].get("started", "")), i),
                   reverse=True)  # fmt: skip
    records = [loaded[i] for i in order]
    watch = _as_running(history.watch_state(state_dir))
    applied_identity = ((status.get("last_apply") or {}).get("source") or {}).get("identity")
    took = next(
        (
            r.get("duration_s")
            for r in records
            if r.get("source") == applied_identity and r.get("result") in ("applied", "repaired")
        ),
        None,
    )
    return {
        **status,
        "apply_duration_s": took,
        "history": records,
        "watch": watch,
        "drift": list((watch or {}).get("drift") or []),
        "drift_checked": bool((watch or {}).get("drift_checked", True)),
    }


def _as_running(watch: dict[str, Any] | None) -> dict[str, Any] | None:
    """The watcher's last word, with `running`: whether its process is still
    there. One killed outright never said it stopped: its state says it
    passes and listens, so it is judged by its pid (a pid reused by another
    program is not a watcher)."""
    if watch is None:
        return None
    stopped = watch.get("state") == "stopped"
    if not stopped and _watcher_alive(watch.get("pid")):
        return {**watch, "running": True}
    gone = {**watch, "running": False, "state": "stopped" if stopped else "not running"}
    for key in ("health_checks", "endpoints"):
        gone[key] = [{**item, "listening": False} for item in watch.get(key) or ()]
    return gone


def _watcher_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"--watch" in fh.read()
    except OSError:
        return False


def _short(identity: str) -> str:
    """A source identity for a table: a commit to 12 hex digits."""
    return identity[:16] if identity.startswith("git:") else identity


def first_words(error: str) -> str:
    """An error on one line: its first, and when that only announces a list
    ("1 error(s) in the configuration:"), the list's first entry."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].endswith(":") and len(lines) > 1:
        more = len(lines) - 2
        return f"{lines[0]} {lines[1]}" + (f" (+{more} more)" if more else "")
    return lines[0]


def render_history(status: dict[str, Any]) -> str:
    lines = []
    if status.get("apply_duration_s") is not None:
        lines.append(f"Last apply took {status['apply_duration_s']:.3f}s")
    watch = status.get("watch")
    if watch:
        state = watch.get("state", "?")
        mode = " (detect-only)" if watch.get("detect_only") else ""
        if not watch.get("running"):
            how = (f"stopped {watch.get('stopped')}" if state == "stopped"
                   else "its process is gone: killed?")  # fmt: skip
            lines.append(f"Watcher{mode}: not running ({how}); last pass {watch.get('updated')}")
        else:
            lines.append(f"Watcher{mode}: {state}, last pass {watch.get('updated')}")
        if watch.get("error"):
            error = str(watch["error"]).rstrip().replace("\n", "\n    ")
            lines.append(f"  error: {error}")
            if watch.get("held"):
                lines.append(f"  held at the last good source: {watch['held']}")
        if watch.get("fetch_error"):
            lines.append(f"  fetch failing: {watch['fetch_error']}")
        for check in (watch.get("health_checks") or ()) if watch.get("running") else ():
            where = "" if check.get("listening") else ", NOT LISTENING (port taken)"
            lines.append(
                f"  health check {check.get('service')} on port {check.get('port')}: "
                f"{check.get('status')} ({check.get('local_endpoints')} local endpoint(s)){where}"
            )
        for served in (watch.get("endpoints") or ()) if watch.get("running") else ():
            where = "" if served.get("listening") else ", NOT LISTENING (port taken)"
            lines.append(f"  {served.get('serves')} on {served.get('address')}{where}")
    if watch:  # what its last pass found; the sync line below is what a plan finds now
        drift = status.get("drift") or []
        if not status.get("drift_checked", True):
            lines.append("Drift at the watcher's last pass: not checked (the pass failed "
                         "before it compared the kernel with any source: see its error)")
        else:
            lines.append(f"Drift at the watcher's last pass: {len(drift)} object(s)"
                         + (": " + ", ".join(drift) if drift else ""))  # fmt: skip
    records = status.get("history") or []
    if records:
        lines.append("")
        head = f"  {'started':<21} {'result':<9} {'took':>8} {'changes':>7}"
        lines.append(head + "  trigger: source")
        above = ""  # the error last shown: the same one again is not repeated
        for r in records:
            short = _short(str(r.get("source", "")))
            lines.append(
                f"  {r.get('started', ''):<21} {r.get('result', ''):<9} "
                f"{r.get('duration_s', 0):>7.3f}s {r.get('changes', 0):>7}  "
                f"{r.get('trigger', '')}: {short}"
            )
            error = first_words(str(r.get("error") or ""))
            if error:
                lines.append("      " + ("(the same error as above)" if error == above else error))
            above = error
            if r.get("held"):
                lines.append(f"      held at {_short(str(r['held']))}")
    return "\n".join(lines) + "\n"


def _result(result: Any) -> str:
    """A one-shot apply's result, as the watcher's passes name them: a change
    still different is a failure; interfaces left out for objects not ours
    are `blocked`, whether this apply changed anything or not."""
    if result.remaining:
        return "failed"
    if result.blocked:
        return history.BLOCKED
    return "no-op" if result.plan.empty else "applied"


def _error(result: Any) -> str:
    from reconciler.engine.foreign_place import blocked_error

    if result.remaining:
        return "not converged after apply"
    return blocked_error(result.blocked) if result.blocked else ""


def recorded(target: Any, run: Callable[[], Any]) -> Any:
    """A one-shot apply, appended to the history whether it succeeds or not."""
    from reconciler.engine.history import PassRecord

    def describe(result: Any) -> PassRecord:
        plan = result.plan
        return PassRecord(
            "",
            0.0,
            "apply",
            _result(result),
            source=str(plan.source.get("identity", "")),
            description=str(plan.source.get("description", "")),
            changes=len(plan.changes),
            error=_error(result),
        )

    def failed(exc: BaseException) -> PassRecord | None:
        from reconciler.engine.reconcile import PlanRefused
        from reconciler.plan.plan import PlanFileError

        if isinstance(exc, PlanRefused | PlanFileError):
            return None  # a saved plan refused before anything changed: no reconcile
        return PassRecord("", 0.0, "apply", "failed", error=str(exc))

    return history.timed(target.state_dir, "apply", run, describe, failed)
