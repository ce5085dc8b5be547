"""A TCP mid-flow packet at a workload's policy point (bpf/lib/policy.h
rcl_pol_admit_wep) when conntrack split its flow's pair: a forward packet
whose entry alone was evicted rejoins by its replies' entry (this side
approved the flow) and gets its entry back; with both entries gone it is
dropped, never judged (the pod's egress allows everything). Run with
BPF_PROG_TEST_RUN against real tables, as test_policy_ct_pairs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kernel import test_policy_ct_pairs as pairs
from tests.kernel.test_nat_prog import ACK, TCP, packet

pytestmark = pytest.mark.kernel

FROM_POD, TO_POD, POL_FWD, POL_SRC = pairs.FROM_POD, pairs.TO_POD, pairs.POL_FWD, pairs.POL_SRC
POD, PEER = pairs.POD, pairs.PEER


@pytest.fixture(scope="module")
def point() -> Iterator[pairs.Point]:
    """test_policy_ct_pairs's policy point, judging as a workload's does."""
    entry = pairs.ENTRY.replace("rcl_pol_admit(ps, 0)", "rcl_pol_admit_wep(ps, 0)")
    assert entry != pairs.ENTRY
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pairs, "ENTRY", entry)
        yield from pairs.point.__wrapped__()


def test_a_forward_packet_whose_entry_was_evicted_rejoins_by_its_replies(point) -> None:
    sport = 45000
    fwd = pairs._key(POD, PEER, sport, 80, TCP)
    rev = pairs._key(PEER, POD, 80, sport, TCP)
    assert pairs._run(point, FROM_POD, packet(POD, PEER, sport, 80, TCP)) == pairs.ALLOWED_NEW
    assert pairs._run(point, TO_POD, packet(PEER, POD, 80, sport, TCP, 0x12)) == pairs.ESTABLISHED
    pairs._evict(point, fwd, rev, TCP)
    assert pairs._entry(point, rev) is not None  # the pair is split

    assert pairs._run(point, FROM_POD, packet(POD, PEER, sport, 80, TCP, ACK)) in pairs.PASSED
    again = pairs._entry(point, fwd)
    assert again is not None and again[0] == POL_FWD and again[1] & POL_SRC
    assert pairs._run(point, FROM_POD, packet(POD, PEER, sport, 80, TCP, ACK)) == pairs.ESTABLISHED


def test_a_mid_flow_packet_of_no_flow_is_dropped_unrecorded(point) -> None:
    sport = 45100
    for flags in (ACK, 0x12, 0x04):
        assert pairs._run(point, FROM_POD, packet(POD, PEER, sport, 80, TCP, flags)) == 0
        assert pairs._entry(point, pairs._key(POD, PEER, sport, 80, TCP)) is None
    # a SYN of the same ports is judged, and passes
    assert pairs._run(point, FROM_POD, packet(POD, PEER, sport, 80, TCP)) == pairs.ALLOWED_NEW
