# kat_scheduler's commands. Every target that needs Python packages sets up .venv itself.
.PHONY: demo test utest itest bench chaos scale lint fmt venv clean

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# pytest-celery, when installed, replaces Celery's in-process fixtures; we use celery.contrib.pytest.
PYTEST := $(BIN)/python -m pytest -p no:celery -q
SELECT := $(if $(file),$(file),) $(if $(function),-k '$(function)',)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/kat-scheduler demo $(DEMO_ARGS)

# Every lane: the fast unit lane (fakeredis, memory://), the integration lane (real Redis, RabbitMQ) and
# the contract lane (OpenKAT's clients' requests against `kat-scheduler api` on the real Redis).
test: $(STAMP)
	$(PYTEST) tests/unit tests/integration tests/contract $(SELECT)

utest: $(STAMP)
	$(PYTEST) $(if $(file),,tests/unit) $(SELECT)

itest: $(STAMP)
	$(PYTEST) $(if $(file),,tests/integration tests/contract) $(SELECT)

# The API benchmark loads the API with wrk (Debian's package), installed here when missing.
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get install -y -q wrk >/dev/null 2>&1 || sudo apt-get install -y -q wrk) || \
		echo "make bench: wrk could not be installed; the API benchmark will say so"
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# The fault suite: a real deployment, faults injected one at a time, nothing lost (docs/faults.md).
chaos: $(STAMP)
	$(BIN)/python -m chaos $(CHAOS_ARGS)

# How the costs grow with the size of the world (docs/performance.md); takes a while.
scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check kat_scheduler tests benchmarks chaos
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff check --fix kat_scheduler tests benchmarks

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache
