# The two commands a new user needs: `make demo` and `make test`.
# Each creates the virtualenv and prepares the dbt manifest when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project -path dbt_project/target -prune -o -type f \( -name '*.sql' -o -name '*.yml' \) -print)

.PHONY: demo test dev prepare lint stop clean

demo: $(MANIFEST)  ## run the whole pipeline on synthetic events (embedded stack)
	$(BIN)/analytics-platform demo

# Whole modules on TEST_WORKERS processes (most of a test's time is spent waiting on
# dbt, Postgres and Dagster's processes); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2

test: $(MANIFEST)  ## run the test suite
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

dev: $(MANIFEST)  ## Dagster UI + daemon on the same storage as the demo
	$(BIN)/analytics-platform dev

prepare: $(MANIFEST)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

stop: $(INSTALLED)  ## stop the embedded Postgres server
	$(BIN)/analytics-platform stop

clean:
	rm -rf .platform dbt_project/target dbt_project/logs

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(MANIFEST): $(INSTALLED) $(DBT_SOURCES)
	$(BIN)/analytics-platform prepare
	touch $@
