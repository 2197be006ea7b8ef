# The two newcomer commands: `make quickstart` (the main job) and `make test` (the test suite).
# Both create .venv/ at the repository root when it is missing and install the project into it (editable);
# a stamp named after pyproject.toml's hash makes this idempotent and re-installs when dependencies change.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=
# tests run one OpenMP thread each (tests/conftest.py), so one pytest worker per core; a test file stays on one worker
PYTEST_WORKERS ?= 2

.PHONY: venv quickstart test lint format clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

quickstart: venv
	$(PY) -m monai_apps quickstart

test: venv
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check monai_apps tests bundles
	$(VENV)/bin/ruff format --check monai_apps tests bundles

format: venv
	$(VENV)/bin/ruff format monai_apps tests bundles
	$(VENV)/bin/ruff check --fix monai_apps tests bundles

clean:
	rm -rf runs .pytest_cache
