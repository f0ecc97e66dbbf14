# The whole set-up is `make run` and `make test`; everything below is bootstrap.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Both commands are for development: debug mode unless the environment says otherwise.
export DEBUG ?= true

.PHONY: run test setup test-deps bench clean

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

setup: $(VENV)/.installed

test-deps:
	@bash scripts/install-test-deps.sh

run: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_admin
	@bash scripts/run.sh $(BIN)/python

test: setup test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache
