# Two entry points a new machine needs (README): `make run` and `make test`. Each builds .venv itself.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run demo test lint bench security docs clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The API on the embedded default: paper profile, SQLite journal under data/paper, 127.0.0.1:8000
run: $(STAMP)
	$(BIN)/propbot serve --profile paper

# The whole story on loopback in one command: simulator + engine, SAFE order → two-man rule → LIVE → kill switch
demo: $(STAMP)
	$(BIN)/propbot demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# Lint, import contracts, strict types, then every test. PostgreSQL journal tests run when PROPBOT_TEST_PG_URL is set
# (.ci/run sets it); without it they are skipped, each with that reason.
# One worker per core, at most 4 (each worker holds a few PostgreSQL connections).
test: lint
	$(BIN)/pytest -n auto --maxprocesses 4

bench: $(STAMP)
	cd benchmarks && ../$(BIN)/python bench_journal.py
	cd benchmarks && ../$(BIN)/python bench_engine.py
	cd benchmarks && ../$(BIN)/python bench_replay.py
	cd benchmarks && ../$(BIN)/python bench_client.py
	cd benchmarks && ../$(BIN)/python bench_simulator.py
	cd benchmarks && ../$(BIN)/python bench_transport.py
	cd benchmarks && ../$(BIN)/python bench_api.py
	cd benchmarks && ../$(BIN)/python bench_live.py
	cd benchmarks && ../$(BIN)/python bench_weight.py
	cd benchmarks && ../$(BIN)/python bench_relay.py
	cd benchmarks && ../$(BIN)/python bench_takeover.py

# schemathesis over the whole OpenAPI once per role (0 server errors; undocumented statuses reported), then
# `propbot journal verify` and the journal tamper matrix, as one table. CI runs the short profile (--quick).
security: $(STAMP)
	$(BIN)/python tests/security/run_security.py --strict-status

docs: $(STAMP)
	$(BIN)/python -m engine.fsm.docs > docs/state-machines.md

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
