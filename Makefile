# `make run` and `make test` both set up .venv first; a second run on an existing .venv is quick
# because the install step only reruns when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.railsight-installed

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch and torchvision are pinned here because they come from local disk; a range would download GBs.
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Development mode unless the environment says otherwise: with no RAILSIGHT_API_KEYS the service makes
# one local key (kept in var/dev-api-key) and prints it in a ready-to-paste curl; it never runs open.
run: setup
	RAILSIGHT_DEV_MODE=$${RAILSIGHT_DEV_MODE:-1} $(BIN)/railsight serve --host 127.0.0.1 --port 8000

test: setup
	$(BIN)/ruff check service kernels models bench tests
	$(BIN)/python -m pytest -q

# The scene-pipeline benchmark (bench/): one JSON line per size; BENCH_ARGS adds options, e.g.
# make bench BENCH_ARGS="--sizes 2000,5000"
BENCH_STAMP := $(VENV)/.railsight-bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench --device cpu $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check service kernels models bench tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var build dist *.egg-info
