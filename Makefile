# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_CORE := $(VENV)/.installed-core
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: demo test test-gpu lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_CORE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_CORE)

demo: $(STAMP_CORE)
	$(BIN)/gemmperf demo

lint: $(STAMP_DEV)
	$(BIN)/ruff check gemmperf tests benchmarks

test: $(STAMP_DEV) lint
	$(BIN)/python -m pytest -q -m "not gpu" tests

test-gpu: $(STAMP_DEV)
	$(BIN)/python -m pip install --quiet -e '.[gpu,dev]'
	$(BIN)/python -m pytest -q -m gpu tests/gpu

bench: $(STAMP_CORE)
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
