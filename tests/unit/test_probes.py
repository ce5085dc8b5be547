"""The watcher's liveness and readiness answers, from the passes it reports
and the clock."""

from __future__ import annotations

from reconciler.gitops.probes import PASS_ALLOWANCE_S, Probes, liveness_window


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_only_while_the_last_pass_converged_the_node():
    probes = Probes(30, Clock())
    first = probes.readiness()
    assert (first.status, first.body["ready"], first.body["passes"]) == (503, False, 0)
    for result in ("applied", "no-op", "repaired"):
        probes.observe_pass(result, "git:abc")
        answer = probes.readiness()
        assert answer.status == 200 and answer.body["last_result"] == result
        assert answer.body["source"] == "git:abc"
    probes.observe_pass("failed", "git:abc")  # held at the last good commit
    held = probes.readiness()
    assert (held.status, held.body["ready"], held.body["passes"]) == (503, False, 4)
    probes.observe_pass("drift", "git:def")  # --detect-only: the node does not run it
    assert probes.readiness().status == 503
    probes.observe_pass("applied", "git:def")
    assert probes.readiness().status == 200


def test_alive_while_passes_end_within_the_window():
    clock = Clock()
    probes = Probes(30, clock)
    assert probes.window == liveness_window(30) == 3 * 60 + PASS_ALLOWANCE_S
    assert probes.liveness().status == 200  # starting counts as a beat
    clock.now += probes.window
    assert probes.liveness().status == 200
    clock.now += 0.5
    stuck = probes.liveness()
    assert (stuck.status, stuck.body["alive"]) == (503, False)
    assert stuck.body["seconds_since_last_pass"] == probes.window + 0.5
    probes.observe_pass("failed", "")  # a failed pass is still the loop turning
    assert probes.liveness().status == 200


def test_a_long_drift_interval_widens_the_window():
    assert liveness_window(600) == 3 * 600 + PASS_ALLOWANCE_S
    assert liveness_window(1) == liveness_window(30)  # never shorter than three retries
