# ws2kafka developer commands. `make help` lists them.
#
# Everything is installed by these targets into places the repository controls: the virtualenv
# in .venv, and the Kafka jars and Go-built binaries in the ws2kafka cache
# (${WS2KAFKA_CACHE:-~/.cache/ws2kafka}). The first run on a machine builds them; later runs reuse them.

PYTHON ?= python3
# Never put the working directory on sys.path: the folder `operator/` would shadow the
# standard library module `operator`.
export PYTHONSAFEPATH := 1
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv test lint unit stack demo demo-node image bench crds clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -e ".[dev]" --config-settings editable_mode=strict
	touch $(STAMP)

venv: $(STAMP)
	@# strict editable installs link files one by one: relink so new modules are importable
	@$(BIN)/pip install --quiet --no-deps -e . --config-settings editable_mode=strict

stack: venv  ## build/fetch and cache Kafka, the Kubernetes control plane and node, the image base (first run: minutes)
	$(BIN)/ws2kafka-devstack prepare

demo: stack  ## the local demo: Kafka, API server, inline operator, a demo feed, data flowing
	$(BIN)/ws2kafka-devstack demo

# IMAGE=registry.example.com/ws2kafka:0.2.0 names the image; default: localhost/ws2kafka:dev-HASH
image: venv  ## build the container image (podman, or docker if it runs; prints the name)
	$(BIN)/ws2kafka-devstack image --context . $(if $(IMAGE),--tag $(IMAGE))

demo-node: stack  ## the demo with the operator and a bridge as pods of a real kubelet (root)
	$(BIN)/ws2kafka-devstack demo --node

crds: venv  ## regenerate crds/websocketsource.yaml from bridge/config.py
	$(BIN)/ws2kafka crds --write

bench: stack  ## benchmarks: bridge vs ceilings, operator scale (JSON in docs/)
	$(BIN)/python bench/run.py --repeats 5 --output docs/performance.json --plot docs/performance.png
	$(BIN)/python bench/operator_scale.py --output docs/operator-scale.json
	$(BIN)/python bench/hot_path.py --output docs/hot-path.json
	$(BIN)/python bench/connections.py --output docs/connections.json

lint: venv  ## ruff, mypy --strict, hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p ws2kafka.bridge -p ws2kafka.operator -p ws2kafka.devstack
	$(BIN)/mypy tests
	$(BIN)/mypy bench/run.py
	$(BIN)/mypy bench/operator_scale.py
	$(BIN)/mypy bench/hot_path.py
	$(BIN)/mypy bench/connections.py
	$(BIN)/hadolint Dockerfile

test: lint stack  ## the whole suite: lint, then pytest against a real Kafka broker and API server
	$(BIN)/pytest

unit: venv  ## only the tests that need no broker and no API server
	$(BIN)/pytest tests/unit

clean:  ## remove the virtualenv and build leftovers (the component cache stays)
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
