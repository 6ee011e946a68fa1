# Two commands on a fresh machine: `make run` and `make test`. Each creates .venv on first use
# and installs the exact versions of requirements.lock (`make lock` refreshes it).
PYTHON ?= python3
VENV := .venv
LOCK := requirements.lock
# (A copy of the project without the lock, as tests/test_readme.py makes, stamps pyproject.toml alone.)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(wildcard $(LOCK)) | cksum | cut -d' ' -f1)
# The Node clients and verifiers the tests drive, pinned by the lock file (npm ci).
NODE_DIR := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-$(shell cat $(NODE_DIR)/package-lock.json | cksum | cut -d' ' -f1)
# uv resolves the lock; the version is the one pyproject.toml's test extra pins.
UV_VERSION := $(shell sed -n 's/^ *"uv==\([^"]*\)".*/\1/p' pyproject.toml)

# The console's browser tests drive Debian's Chromium (Playwright's own browsers are never fetched).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null

.PHONY: run test lint unit bench lock lock-installed clean

$(STAMP): pyproject.toml $(wildcard $(LOCK))
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r $(LOCK)
	$(VENV)/bin/python -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(NODE_STAMP): $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

run: $(STAMP)  ## run hookcast serve on the embedded SQLite default (./hookcast.db)
	$(VENV)/bin/hookcast serve

lint: $(STAMP)  ## the quality gates: ruff (lint, formatting) and mypy (strict, config in pyproject.toml)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

test: lint $(NODE_STAMP) $(CHROMIUM)  ## the gates, then the whole test suite: on SQLite, then on PostgreSQL when HOOKCAST_TEST_POSTGRES_URL is set
	env -u HOOKCAST_TEST_POSTGRES_URL $(VENV)/bin/python -m pytest -n 2 -q
	@if [ -n "$$HOOKCAST_TEST_POSTGRES_URL" ]; then \
	  echo "== the suite again on PostgreSQL ($$HOOKCAST_TEST_POSTGRES_URL)"; \
	  HOOKCAST_TEST_BACKEND=postgres $(VENV)/bin/python -m pytest -n 2 -q; \
	else \
	  echo "PostgreSQL run skipped: set HOOKCAST_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test to run it too"; \
	fi

# The schemathesis plugin serves only the fuzz tests, which are slow: not loading it saves
# about a second of start-up in each of the three pytest processes.
unit: $(STAMP) $(NODE_STAMP)  ## the fast inner loop: every test not marked slow, on SQLite
	env -u HOOKCAST_TEST_POSTGRES_URL -u HOOKCAST_TEST_BACKEND HOOKCAST_HYPOTHESIS_PROFILE=unit \
	  $(VENV)/bin/python -m pytest -n 2 -q -m "not slow" -p no:schemathesis

# The newest versions pyproject.toml allows, for every extra, on every platform and Python
# >= 3.11; run it, then `make test`, and commit requirements.lock with what it changed.
lock: $(VENV)/bin/python  ## refresh requirements.lock from PyPI
	$(VENV)/bin/python -m pip install -q "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
	  --upgrade --custom-compile-command "make lock" --quiet -o $(LOCK)

# After adding a dependency: lock it without moving what .venv already has (its versions are
# the constraints wherever pyproject.toml allows them).
lock-installed: $(VENV)/bin/python  ## add new dependencies to requirements.lock, keeping .venv's versions
	$(VENV)/bin/python -m pip install -q "uv==$(UV_VERSION)"
	$(VENV)/bin/python -m pip freeze --exclude-editable | grep -v ' @ ' > $(VENV)/installed.txt
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
	  --constraint $(VENV)/installed.txt --custom-compile-command "make lock" --quiet -o $(LOCK)
	sed -i '/^    #   -c .*installed.txt$$/d' $(LOCK)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(NODE_DIR)/node_modules
