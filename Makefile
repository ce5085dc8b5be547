# Every user-facing target does its own set-up first (idempotent, fast when done).
VENV   := .venv
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo demo-down test unit kernel lint bench clean

setup:
	@bash scripts/setup.sh

# KEEP=1 leaves the demo's sandbox node up for commands by hand; demo-down removes it.
demo: setup
	PYTHONPATH=. $(PY) scripts/demo.py $(if $(KEEP),--keep)

demo-down: setup
	PYTHONPATH=. $(PY) scripts/demo.py --down

# Two workers, a test file each at a time: the kernel tests spend much of
# their time waiting (traffic that must be dropped, netlink, a child's build).
test: setup
	$(PY) -m pytest -ra --timeout=300 --durations=15 -p no:cacheprovider -n 2 --dist loadfile tests

unit: setup
	$(PY) -m pytest -q -m "not kernel" tests

lint: setup
	$(VENV)/bin/ruff check reconciler sandbox tests bench scripts
	$(VENV)/bin/mypy reconciler sandbox
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
