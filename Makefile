# recoup: install · demo · test · lint · bench. Every target installs first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

# No telemetry, no network: Prefect's analytics off.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install demo test lint format bench lock clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "pip==26.3"
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $@

demo: install
	$(BIN)/recoup demo

# the test files run on two workers, each file whole on one (its module fixtures built once)
TEST_WORKERS ?= 2

test: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(BIN)/ruff check flows tests bench
	$(BIN)/ruff format --check flows tests bench
	cd dbt_project && ../$(BIN)/sqlfluff lint models tests

format: install
	$(BIN)/ruff check --fix flows tests bench
	$(BIN)/ruff format flows tests bench

bench: install
	$(BIN)/python -m bench.run

# Re-resolve every pin after changing pyproject.toml, then run `make test`.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e ".[dev]"
	.lock-venv/bin/pip freeze --exclude-editable | sed '/^recoup/d' > constraints.body
	{ head -n 2 constraints.txt; cat constraints.body; } > constraints.new
	mv constraints.new constraints.txt && rm -rf constraints.body .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
