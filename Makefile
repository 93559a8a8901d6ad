# The product's front door: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint bench clean install lock

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[embedded,dev]'
	@touch $(STAMP)

install: $(STAMP)

## demo: the whole system live on the embedded stack, with traffic (Ctrl-C stops it)
demo: $(STAMP)
	$(BIN)/techshop demo

## test: lint, type-check, then unit, integration and end-to-end tests
test: $(STAMP)
	@bash .ci/ensure-chromium
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true
	$(BIN)/mypy

## bench: every benchmark in bench/, each printing figures and a ratio to its baseline
bench: $(STAMP)
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/hop.py
	$(BIN)/python bench/fraud.py --quick
	$(BIN)/python bench/recommend.py
	$(BIN)/python bench/moderation.py --quick
	$(BIN)/python bench/backtest.py --quick

## lock: re-resolve and pin every dependency (run after editing pyproject.toml)
lock:
	rm -rf /tmp/techshop-lock && $(PYTHON) -m venv /tmp/techshop-lock
	/tmp/techshop-lock/bin/pip install -q '.[embedded,dev]'
	/tmp/techshop-lock/bin/pip freeze --exclude techshop-streams > constraints.txt

clean:
	rm -rf $(VENV) .techshop .pytest_cache .mypy_cache .ruff_cache build *.egg-info bench/out
