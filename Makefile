# The README's two commands: `make train` and `make test`. Both create the environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: train test bench lint format clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

train: $(VENV)/.installed  ## fine-tune on the offline defaults; extra Hydra args: make train ARGS="pooling=cls,mean -m"
	$(PY) train.py $(ARGS)

test: $(VENV)/.installed  ## the offline test suite (tiny random encoders, small data)
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.installed  ## benchmarks/README.md's measurements (about an hour on 2 cores)
	$(PY) -m pip install -e ".[dev,bench]"
	$(PY) benchmarks/bench.py all

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean:
	rm -rf outputs multirun wandb lightning_logs .pytest_cache
