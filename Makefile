# `make run` and `make test` work on a fresh clone: they create .venv and install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint migrate seed clean recover bench bench-2pc bench-modes bench-relay chaos replay record-histories audit

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sagactl run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

migrate: $(STAMP)
	$(BIN)/sagactl migrate

seed: $(STAMP)
	$(BIN)/sagactl seed

clean:
	rm -rf .data

# Orders through the API under load beside a bare workflow's floor; JSON and PNG in bench/results.
bench: $(STAMP)
	$(BIN)/python -m bench.load $(BENCH_ARGS)

# The same orders orchestrated and choreographed, timed alike; JSON in bench/results.
bench-modes: $(STAMP)
	$(BIN)/python -m bench.saga_modes $(BENCH_ARGS)

# The API's CPU per order beside a trivial request's (GET /healthz), in one run.
bench-api: $(STAMP)
	$(BIN)/python -m bench.api_cost $(BENCH_ARGS)

bench-2pc: $(STAMP)
	$(BIN)/python -m bench.two_phase_vs_saga --json bench/results/two_phase_vs_saga.json

recover: $(STAMP)
	$(BIN)/sagactl recover

bench-relay: $(STAMP)
	$(BIN)/python -m bench.relay_throughput --json bench/results/relay_throughput.json

# The replay corpus alone: does today's workflow code still replay every recorded saga?
replay: $(STAMP)
	$(BIN)/python -m pytest -q tests/replay

# Re-record the corpus (after a deliberate, patched change; see docs/evolving-sagas.md).
record-histories: $(STAMP)
	$(BIN)/sagactl record-histories

# Every order fully done or fully undone? Against the database (and provider) in settings.
audit: $(STAMP)
	$(BIN)/sagactl audit

# Load while the worker, the relay, PostgreSQL and Temporal die; then the audit. Exit 1 on any violation.
chaos: $(STAMP)
	$(BIN)/python -m chaos --json bench/results/chaos.json --plot bench/results/chaos.png $(CHAOS_ARGS)
