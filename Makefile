# `make demo` and `make test` each set up what they need in .venv (and, for the JavaScript parts,
# in js/node_modules and example_apps/react_chat/web/node_modules).
PYTHON ?= python3
NPM ?= npm
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed

JS := js
JS_DEPS := $(JS)/node_modules/.installed
JS_BUILT := $(JS)/dist/.built
JS_TARBALL := $(JS)/wattfare-embed-$(shell sed -n 's/^  "version": "\(.*\)",$$/\1/p' $(JS)/package.json).tgz
JS_SOURCES := $(wildcard $(JS)/src/*.ts) $(JS)/package.json $(JS)/tsconfig.json $(JS)/tsconfig.build.json $(JS)/scripts/build.mjs
WEB := example_apps/react_chat/web
WEB_DEPS := $(WEB)/node_modules/.installed
WEB_BUILT := $(WEB)/dist/index.html
WEB_SOURCES := $(wildcard $(WEB)/src/*.ts $(WEB)/src/*.tsx) $(WEB)/index.html $(WEB)/vite.config.ts $(WEB)/tsconfig.json
NPM_QUIET := --no-audit --no-fund --loglevel=error

.PHONY: screenshots test soak lint typecheck pytest pytest-openai3 js js-check js-static react-chat-build react-chat demo demo-hosted bench bench-peers bench-scale bench-profile bench-telemetry clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP) $(DEMO_STAMP)

# The demo needs only the package with FastAPI and the openai SDK, not the test toolchain. It runs
# from this directory, so a plain install (no editable-install notices) serves it.
$(DEMO_STAMP): pyproject.toml
	@echo "Setting up .venv for the demo (first run only; about a minute)..."
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	@echo "Installing wattfare-embed with its demo extra (FastAPI, the openai SDK, the consent domain)..."
	@$(BIN)/pip install --quiet --disable-pip-version-check ".[demo]"
	@touch $(DEMO_STAMP)

# The client packages installed together hold the openai SDK to its 2.x line (see pyproject's
# `clients`), so the openai SDK's own rows, pydantic-ai's and the in-process handles also run
# against the 3.x line, in an environment of their own.
VENV3 := .venv-openai3
STAMP3 := $(VENV3)/.installed
OPENAI3_TESTS := tests/clients/test_matrix.py tests/clients/test_sync_handle.py \
	tests/e2e/test_server_client.py tests/e2e/test_openai_errors_in_host_routes.py
OPENAI3_ROWS := openai-async or openai-sync or pydantic-ai or test_sync_handle or test_server_client or host_routes

$(STAMP3): pyproject.toml
	$(PYTHON) -m venv $(VENV3)
	$(VENV3)/bin/pip install --quiet --upgrade pip
	$(VENV3)/bin/pip install --quiet -e ".[postgres,openai,pydantic-ai,fastapi,litestar]" "openai>=3" \
		pytest pytest-asyncio pytest-timeout
	touch $(STAMP3)

lint: $(STAMP)
	$(BIN)/ruff check wattfare_embed tests example_apps bench
	$(BIN)/ruff format --check wattfare_embed tests example_apps bench

typecheck: $(STAMP)
	$(BIN)/mypy

# -- JavaScript: the npm package (js/) and the React example ------------------------------------
# npm ci runs only when a lockfile changed; the package is built once per change of its sources.

$(JS_DEPS): $(JS)/package-lock.json
	cd $(JS) && $(NPM) ci $(NPM_QUIET)
	touch $@

$(JS_BUILT): $(JS_DEPS) $(JS_SOURCES)
	cd $(JS) && $(NPM) run --silent build
	touch $@

$(JS_TARBALL): $(JS_BUILT)
	cd $(JS) && $(NPM) pack --silent $(NPM_QUIET) > /dev/null

js: $(JS_TARBALL)

js-check: js
	cd $(JS) && $(NPM) run --silent typecheck && $(NPM) test --silent

# Rebuild wattfare_embed/static/wattfare.js (committed, so pip users need no Node) from js/src.
js-static: $(JS_DEPS)
	cd $(JS) && $(NPM) run --silent build:static

$(WEB_DEPS): $(WEB)/package-lock.json $(JS_TARBALL)
	cd $(WEB) && $(NPM) ci $(NPM_QUIET)
	touch $@

$(WEB_BUILT): $(WEB_DEPS) $(WEB_SOURCES)
	cd $(WEB) && $(NPM) run --silent build

react-chat-build: $(WEB_BUILT)

react-chat: $(STAMP) $(WEB_BUILT)
	$(BIN)/python -m example_apps.react_chat.run

# -- tests ---------------------------------------------------------------------------------------
# Without Node the JavaScript steps are skipped (and the tests that need them say so); in CI they run.

pytest: $(STAMP)
	@if command -v node >/dev/null 2>&1 && command -v $(NPM) >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory js-check react-chat-build; \
	elif [ -n "$$CI" ] && [ "$$CI" != "false" ] && [ "$$CI" != "0" ]; then \
	  echo "Node.js and npm are missing, and CI must run the JavaScript tests (.ci/run installs them)"; exit 1; \
	else echo "Node.js is missing: the JavaScript tests will skip (CI installs Debian's nodejs and npm)"; fi
	$(BIN)/python -m pytest -q -p no:cacheprovider

pytest-openai3: $(STAMP3)
	$(VENV3)/bin/python -m pytest -q -p no:cacheprovider $(OPENAI3_TESTS) -k "$(OPENAI3_ROWS)"

test: lint typecheck pytest pytest-openai3

# The README's pictures in docs/images come from the browser tests; an ordinary run leaves them alone.
screenshots: $(STAMP) react-chat-build
	WATTFARE_SCREENSHOTS=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/browser tests/hosted/test_browser.py

# The memory soak: an hour of mid-stream disconnects and revokes against one worker, its memory
# sampled each minute (not part of `make test`). SOAK_MINUTES=5 for a shorter run.
soak: $(STAMP)
	$(BIN)/python -m tests.faults.soak --minutes $(or $(SOAK_MINUTES),60)

demo: $(DEMO_STAMP)
	@$(BIN)/python -m example_apps.fastapi_chat.run_demo $(if $(CONSENT),--consent $(CONSENT))

demo-hosted: $(DEMO_STAMP)
	@$(BIN)/python -m example_apps.fastapi_chat.run_demo --consent hosted

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

# What telemetry costs a request, part by part, against the embed with it off, in one run.
# (`make bench BENCH_ARGS=--telemetry` adds the embed with everything on to the main table.)
bench-telemetry: $(STAMP)
	$(BIN)/python -m bench.telemetry --pin $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VENV3) $(LITELLM_VENV) .demo *.egg-info $(JS)/node_modules $(JS)/dist $(JS)/*.tgz $(WEB)/node_modules $(WEB)/dist
