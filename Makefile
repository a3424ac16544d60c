# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check engine schemas cli.py tests $(wildcard bench/*)
	$(BIN)/ruff format --check engine schemas cli.py tests $(wildcard bench/*)

typecheck: $(STAMP)
	$(BIN)/mypy --strict engine cli.py

unit: $(STAMP)
	$(BIN)/python -m pytest -W error -n 2 -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/validate
	$(BIN)/python bench/plan
	$(BIN)/python bench/run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache outbox cadence.db* demo-state
