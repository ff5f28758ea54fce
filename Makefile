# Two commands for a new user:
#   make demo   set up, then run the main job
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint lint-ruff lint-types calibration benchmark headline clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e ".[dev,ray]"  # ray: the sweep test runs a local Ray cluster
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) scripts/compare.py --preset wechat --name demo --overwrite --timesteps 4000000  # ~10 min on 2 cores

test: setup
	$(PY) -m pytest -n 2

test-fast: setup
	$(PY) -m pytest -n 2 -m "not slow"

lint: lint-ruff lint-types

lint-ruff: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lint-types: setup
	$(VENV)/bin/mypy

calibration: setup
	$(PY) scripts/calibration_table.py --write results/calibration.md

benchmark: setup
	$(PY) scripts/benchmark.py

headline: setup
	$(PY) scripts/headline.py --accounts 2000 --tune-seeds 6 --trials 240 --ps-generations 10 --ppo-seeds 5 --ppo-timesteps 500000  # equal budgets: 240 rule, oracle and risk-policy trials, 10 x 24 policy-search candidates; the script's defaults are larger

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
