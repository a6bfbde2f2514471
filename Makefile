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
.PHONY: docker-build docker-build-gpu docker-train docker-train-gpu docker-test

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

# Docker: the same install (constraints.txt) in an image; runs land in ./outputs on the host.
#   make docker-train ARGS="-m prior=mixture,standard num_labeled=100,1000"
#   make docker-train-gpu ARGS="trainer=gpu experiment=entropy_reward_100labels"
#   make docker-test PYTEST_ARGS='-m "not slow"'    # the suite runs while the test image builds
DOCKER ?= docker
IMAGE ?= ssvae
DOCKER_BUILD_ARGS ?=
DOCKER_BUILD := $(DOCKER) build -f docker/Dockerfile $(DOCKER_BUILD_ARGS)
DOCKER_RUN := $(DOCKER) run --rm --user "$$(id -u):$$(id -g)" -v "$(CURDIR)/outputs:/app/outputs"

docker-build:
	$(DOCKER_BUILD) --target runtime -t $(IMAGE):cpu .

# An empty TORCH_INDEX_URL leaves PyPI's default Linux torch wheel: the CUDA build.
docker-build-gpu:
	$(DOCKER_BUILD) --target runtime --build-arg TORCH_INDEX_URL= -t $(IMAGE):gpu .

docker-train: docker-build
	mkdir -p outputs
	$(DOCKER_RUN) $(IMAGE):cpu $(ARGS)

docker-train-gpu: docker-build-gpu
	mkdir -p outputs
	$(DOCKER_RUN) --gpus all --shm-size=2g $(IMAGE):gpu $(ARGS)

docker-test:
	$(DOCKER_BUILD) --target test --build-arg PYTEST_ADDOPTS='$(PYTEST_ARGS)' -t $(IMAGE):test .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
