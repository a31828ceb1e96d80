# `make run` serves on $APP_PORT (default 3000); `make check` runs lint, mypy and the quick tests
# (a few minutes); `make test` runs lint, mypy and every test, as CI does.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run check test lint typecheck install install-dev browser bench bench-compare bench-growth stress clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.base-installed: requirements/base.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/base.txt
	touch $@

$(VENV)/.dev-installed: requirements/base.txt requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $(VENV)/.base-installed $@

install: $(VENV)/.base-installed

# The client package (client/), installed as users get it: the `imagestore` command.
$(VENV)/.client-installed: client/pyproject.toml $(wildcard client/src/imagestore_client/*.py) | $(VENV)/.dev-installed
	$(BIN)/pip install --quiet ./client
	touch $@

install-dev: $(VENV)/.dev-installed $(VENV)/.client-installed

run: install
	$(BIN)/python manage.py serve

# Debian's Chromium for the browser tests, installed when missing if run as root (as in CI);
# otherwise one line says how, and the browser tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else echo "No Chromium: the browser tests will skip (install it: sudo apt-get install chromium)"; fi; }

lint: install-dev typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy over images/, imagestore/ and client/src/ (settings in setup.cfg's [mypy] sections).
typecheck: install-dev
	$(BIN)/mypy

# The quick loop: no test that starts servers of its own, drives a browser or runs a replica set.
check: lint
	$(BIN)/python -m pytest -q -m "not slow and not browser and not replica_set"

test: install-dev browser lint
	$(BIN)/python -m pytest

# The race harness for many rounds (`make test` runs a few per interleaving).
stress: install-dev
	RACE_ROUNDS=$${RACE_ROUNDS:-100} $(BIN)/python -m pytest tests/test_races.py -q

bench: install-dev
	$(BIN)/python -m benchmarks.run

# The original (built by ../shared/tools/original.sh) and imagestore side by side.
bench-compare: install-dev
	$(BIN)/python -m benchmarks.run --compare original

# List, get, similar, upload and /fields at 2,000, 20,000, 200,000 and 1,000,000 documents.
bench-growth: install-dev
	$(BIN)/python -m benchmarks.run --growth

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
