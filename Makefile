# The commands the README names. Everything installs itself: a fresh Debian machine needs only
# python3 (with venv) and apt-get.
PYTHON ?= python3
VENV ?= .venv
STATE ?= .state/demo
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/.tools/bin:$(PATH)

.PHONY: setup tools k8s lint fmt test test-fast demo down bench schema clean

setup: $(VENV)/.installed tools k8s

$(VENV)/.installed: pyproject.toml local/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./local
	touch $@

tools:
	scripts/fetch-tools.sh

# The real Kubernetes control plane (kube-apiserver, controller-manager, scheduler, etcd, kwok),
# built from the Go module proxy once (~7 minutes on two cores) into ~/.cache/coalmine.
k8s:
	scripts/build-k8s.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The whole suite: lint, unit, workflow (time-skipping server), sandbox, integration, replay, e2e,
# faults. It mostly waits (rollouts, timers, Prometheus), so three processes share the two cores;
# each test module stays in one process (its module fixtures), each process has its own cluster.
test: lint
	$(BIN)/pytest -q -n 3 --dist loadfile

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

demo: setup
	$(BIN)/coalmine demo --state-dir $(STATE)

down: setup
	$(BIN)/coalmine down --state-dir $(STATE)

bench: setup
	$(BIN)/python -m bench

schema: setup
	$(BIN)/python -m workflows.spec > deploy/schema/canary.schema.json

clean:
	rm -rf $(VENV) .tools .state .mypy_cache .ruff_cache .pytest_cache  # the k8s build stays cached in ~/.cache/coalmine
