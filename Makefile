# `make demo` and `make test` each set up what they need in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo demo-hosted bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check wattfare_embed tests example_apps bench
	$(BIN)/ruff format --check wattfare_embed tests example_apps bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/python -m example_apps.fastapi_chat.run_demo $(if $(CONSENT),--consent $(CONSENT))

demo-hosted: $(STAMP)
	$(BIN)/python -m example_apps.fastapi_chat.run_demo --consent hosted

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .demo *.egg-info
