"""The watcher's liveness and readiness answers, from the passes it reports
and the clock."""

from __future__ import annotations

from reconciler.gitops.probes import PASS_ALLOWANCE_S, Probes, liveness_window, proxy_health


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


def test_kube_proxys_health_check_stays_up_while_a_bad_push_is_held():
    """A node held at its last good source still proxies: a bad push must
    not take every node out of every load balancer."""
    clock, wall = Clock(), Clock()
    wall.now = 1_700_000_000.0
    probes = Probes(30, clock, wall)
    first = probes.proxy_health()
    assert first.status == 503 and first.body["lastUpdated"] is None
    assert first.body["currentTime"] == "2023-11-14T22:13:20.000+00:00"
    probes.observe_pass("applied", "git:abc")
    up = probes.proxy_health()
    assert (up.status, up.body["nodeEligible"]) == (200, True)
    assert up.body["lastUpdated"] == "2023-11-14T22:13:20.000+00:00"
    wall.now += 60
    probes.observe_pass("failed", "git:abc", held=True)
    held = probes.proxy_health()
    assert held.status == 200 and held.body["lastUpdated"] == "2023-11-14T22:14:20.000+00:00"
    assert probes.readiness().status == 503  # the agent's own rollout still stops
    wall.now += 60
    probes.observe_pass("failed", "")  # not even the last good source: no known state
    lost = probes.proxy_health(node=False)
    assert lost.status == 503 and "nodeEligible" not in lost.body
    assert lost.body["lastUpdated"] == "2023-11-14T22:14:20.000+00:00"  # the last good one
    probes.observe_pass("no-op", "git:abc")
    assert probes.proxy_health().status == 200
    clock.now += probes.window + 1  # the loop is stuck
    assert probes.proxy_health().status == 503


def test_proxy_health_is_a_pure_answer():
    assert proxy_health(0.0, 0.0, True, True).status == 200
    assert proxy_health(0.0, None, True, True).status == 503
    assert proxy_health(0.0, 0.0, False, True).status == 503
    assert proxy_health(0.0, 0.0, True, False).status == 503
