# `make demo` and `make test` each set up what they need in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo demo-hosted bench bench-peers bench-scale bench-profile clean

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

# The benchmark (how it measures: bench/run.py). BENCH_ARGS=--quick for a check, --markdown for the README.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# LiteLLM's proxy in the same table, from its own pinned virtual environment (not the project's).
LITELLM_VENV := bench/.venv-litellm
LITELLM_STAMP := $(LITELLM_VENV)/.installed
$(LITELLM_STAMP): bench/litellm-requirements.txt
	rm -rf $(LITELLM_VENV)
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --no-deps -r bench/litellm-requirements.txt
	touch $(LITELLM_STAMP)

bench-peers: $(STAMP) $(LITELLM_STAMP)
	$(BIN)/python -m bench.run --litellm $(LITELLM_VENV)/bin/litellm $(BENCH_ARGS)

bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

bench-profile: $(STAMP)
	$(BIN)/pip install --quiet "py-spy==0.4.3"
	$(BIN)/python -m bench.profile $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LITELLM_VENV) .demo *.egg-info
