"""A pass whose apply reached the kernel but whose record could not be
written (a full state directory) is held at what the kernel now runs:
holding at the last good source would apply it over the new one on every
pass, and readiness would name a commit the node no longer runs."""

from reconciler.engine.caches import Caches
from reconciler.engine.reconcile import Target, Unrecorded
from reconciler.gitops.loop import Engine, Watcher, WatchOptions
from reconciler.gitops.probes import Probes
from reconciler.gitops.triggers import Event

FULL = "cannot write /s/applied.json: no space left on device; free space there; ..."


class _Unrecorded(Engine):
    applies = 0

    def apply(self, target, spec, changed, opener):
        self.applies += 1
        raise Unrecorded(FULL, "dir:new", converged=True)


def test_a_pass_it_cannot_record_is_held_at_what_the_kernel_runs(tmp_path):
    target = Target("n1", "/sys/fs/bpf/x", tmp_path / "state")
    probes = Probes(30)

    def report(record, plan):
        probes.observe_pass(record.result, record.held or record.source, bool(record.held),
                            record.error)  # fmt: skip

    engine = _Unrecorded(Caches(), False)
    watcher = Watcher(target, WatchOptions(config=str(tmp_path)), engine, report)
    watcher.good_identity = "dir:old"
    for n in (1, 2):
        record = watcher.run_pass(Event("drift check"))
        assert engine.applies == n  # each pass tries the new source, never the old over it
    assert (record.result, record.held, record.error) == ("failed", "dir:new", FULL)
    ready = probes.readiness()
    assert ready.status == 503
    assert ready.body["source"] == "dir:new" and ready.body["reason"] == FULL
    assert probes.proxy_health().status == 200
