# Two commands on a fresh machine: `make run` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The Node clients and verifiers the tests drive, pinned by the lock file (npm ci).
NODE_DIR := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-$(shell cat $(NODE_DIR)/package-lock.json | cksum | cut -d' ' -f1)

.PHONY: run test lint unit bench clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test,postgres]'
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

test: lint $(NODE_STAMP)  ## the gates, then the whole test suite: on SQLite, then on PostgreSQL when HOOKCAST_TEST_POSTGRES_URL is set
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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(NODE_DIR)/node_modules
