#!/usr/bin/env bash
# `make test`: the whole suite as two pytest runs side by side. The kernel
# tests spend much of their time waiting (traffic, netlink, a child's
# build), so the pure tests (unit, packaging) run beside them instead of
# after. Each run prints its own summary, the pure one's after the kernel
# one's; the target fails if either does.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
work=$(mktemp -d /tmp/rcl-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

# distinct temporary roots, and no pytest cache both would write
"$PY" -m pytest -ra --timeout=300 --durations=5 -p no:cacheprovider \
    --basetemp="$work/pure" tests/unit tests/packaging >"$work/pure.log" 2>&1 &
pure=$!
"$PY" -m pytest -ra --timeout=300 --durations=15 -p no:cacheprovider \
    --basetemp="$work/kernel" tests/kernel
kernel_rc=$?
wait "$pure"
pure_rc=$?

echo
echo "== tests/unit and tests/packaging (run beside the kernel tests)"
cat "$work/pure.log"
if [ "$kernel_rc" -ne 0 ] || [ "$pure_rc" -ne 0 ]; then
    echo "make test: failed (kernel tests exit $kernel_rc, unit and packaging tests exit $pure_rc)"
    exit 1
fi
