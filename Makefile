# The two commands of the quick start: `make serve` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
TSTAMP := $(VENV)/.stamp-test

# Node.js 22 and 24 for nodejs22.x / nodejs24.x functions, from the npm registry only: the package
# node-linux-<arch>@NN carries the node binary itself (no install script, nothing fetched from
# nodejs.org). Optional: no npm, or no network, only means that runtime is not offered (`lambdalet
# runtimes` lists what is).
NODE22 := $(VENV)/runtimes/node22
NODE24 := $(VENV)/runtimes/node24
SAMVENV := $(VENV)/tools/sam
NODE_ARCH := $(patsubst x86_64,x64,$(patsubst aarch64,arm64,$(shell uname -m)))

# The AWS SDK for Python in the Python runtimes (as AWS's carry it): boto3 and its dependencies from
# PyPI into .venv/runtimes/python-sdk/X.Y for each pythonX.Y the host runs (runtime/pysdk_provision.py).
# Optional: without it (no network), functions must vendor their SDK.
PYTHON_SDK := boto3==1.44.18

# The AWS SDK for JavaScript v3 in the Node.js runtimes (as AWS's nodejs18.x+ carry it): the clients
# listed in runtime/nodesdk.py, from npm (--ignore-scripts) into .venv/runtimes/node-sdk/<major> for
# each nodejsNN.x the host runs (runtime/nodesdk_provision.py). One version for all; an item
# `nodejs22.x=3.x.y` after it pins one runtime apart. Optional: without it, functions bundle their SDK.
NODE_SDK := 3.1178.0

.PHONY: install install-test serve test test-fast lint clean python-sdk node-sdk

install: $(STAMP) $(NODE22)/.stamp $(NODE24)/.stamp python-sdk node-sdk

python-sdk: | $(STAMP)
	@$(BIN)/python -m lambdalet.runtime.pysdk_provision $(VENV)/runtimes $(PYTHON_SDK) || \
	  echo "note: could not provision $(PYTHON_SDK): Python functions must bring their own AWS SDK"

# After the node binaries: it provisions the SDK for every nodejsNN.x the host then runs.
node-sdk: | $(STAMP) $(NODE22)/.stamp $(NODE24)/.stamp
	@$(BIN)/python -m lambdalet.runtime.nodesdk_provision $(VENV)/runtimes $(NODE_SDK) || \
	  echo "note: could not provision the AWS SDK for JavaScript: Node.js functions must bundle their own"

$(VENV)/runtimes/node%/.stamp: | $(STAMP)
	@if ! command -v npm >/dev/null; then \
	  echo "note: npm not found: nodejs$*.x functions will not be available (install npm, then re-run make install)"; \
	elif npm install --prefix $(VENV)/runtimes/node$* --no-save --ignore-scripts --no-audit --no-fund --loglevel=error \
	       node-linux-$(NODE_ARCH)@$* && $(VENV)/runtimes/node$*/node_modules/node-linux-$(NODE_ARCH)/bin/node --version; then \
	  touch $@; \
	else echo "note: could not provision Node.js $* from npm: nodejs$*.x functions will not be available"; fi

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

install-test: $(TSTAMP) python-sdk node-sdk

$(TSTAMP): $(STAMP) pyproject.toml | $(NODE22)/.stamp $(NODE24)/.stamp $(SAMVENV)/.stamp
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# AWS SAM CLI for tests/integration/test_sam_cli.py (`sam remote invoke`), in its own virtualenv so
# its pins never choose the project's boto3/click. Optional: without it that test skips.
$(SAMVENV)/.stamp: | $(STAMP)
	@if $(PYTHON) -m venv $(SAMVENV) && $(SAMVENV)/bin/pip install -q aws-sam-cli; then touch $@; \
	else echo "note: could not install the AWS SAM CLI: tests/integration/test_sam_cli.py will skip"; fi

serve: install
	$(BIN)/lambdalet serve $(ARGS)

test: install-test
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

# The inner loop: tests/unit (no server, no real processes: those are in tests/processes), without
# the tests marked root or slow. `make test` stays the whole suite.
test-fast: install-test
	$(BIN)/python -m pytest -q -ra -m "not root and not slow" tests/unit $(PYTEST_ARGS)

# Lint (ruff), the layering (import-linter's contracts for DESIGN's "never" rules, then no import up
# the layer order: tools/import_layers.py) and types (mypy on the packages that hold it): pyproject.toml.
lint: install-test
	$(BIN)/ruff check src tests bench tools
	$(BIN)/lint-imports
	$(BIN)/python tools/import_layers.py --check
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
