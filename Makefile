# One-command set-up and runs. Everything uses the virtual environment in .venv/.
#   make train                      # set up (once), then train the default run
#   make train ARGS="experiment=entropy_reward_100labels"
#   make test                       # set up (once), then the whole test suite
PYTHON ?= python3
VENV ?= .venv
# CPU pins (torch 2.13.0). A CUDA user installs torch first and sets CONSTRAINTS= (see README).
CONSTRAINTS ?= constraints.txt
ARGS ?=
PYTEST_ARGS ?=

BIN := $(VENV)/bin
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: install train test test-fast lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(PIP_CONSTRAINTS) -e '.[test]'
	touch $@

train: install
	$(BIN)/python train.py $(ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
