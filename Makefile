# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

include mk/ducklake.mk
include mk/lowest.mk

.PHONY: install demo test test-fast bench docs docs-serve lint clean chromium system-deps

# Installed with uv (pip-installed into the venv first): a cold install takes about 10 s where
# pip's resolver takes about 2 minutes, and CI builds three venvs. --compile-bytecode, because uv
# writes no .pyc files and this machine sets PYTHONDONTWRITEBYTECODE=1: without them every process
# compiles every module it imports (importing prefect_etl_blocks with prefect_aws and Prefect's test
# utilities took 10 s instead of 5). ci/constraints-newest.txt keeps prefect-aws on the 0.5 line.
# The venv keeps its own pip, upgraded, for the tests that pip-install generated projects and wheels.
$(STAMP): pyproject.toml ci/constraints-newest.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --upgrade-package pip \
	  -c ci/constraints-newest.txt pip -e '.[dev,dask,docs,bench]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests use: headless Chromium (UI check; no downloaded browsers),
# PostgreSQL and Redis (the production Prefect stack and the DuckLake catalog). Installed only
# when missing, and only as root; otherwise the message names the packages to install.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (apt-get install$$missing)" >&2; exit 1; fi; \
	fi

chromium: system-deps

demo: $(STAMP)
	$(BIN)/prefect-etl demo

# The main suite on the newest releases (DuckDB 2.x), then, side by side, the lowest leg (every
# dependency at its declared lower bound, .venv-lowest) and the DuckLake leg on DuckDB 1.5.5
# (.venv-ducklake, one test at a time against PostgreSQL, mostly waiting); each leg's output is
# printed whole when it ends.
test: $(STAMP) system-deps
	$(BIN)/ruff check prefect_etl_blocks tests benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not ducklake"
	$(MAKE) -j2 --output-sync=target test-lowest test-ducklake

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow and not ducklake"

bench: $(STAMP)
	$(BIN)/python -m benchmarks

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	$(BIN)/mkdocs serve -a 127.0.0.1:8000

lint: $(STAMP)
	$(BIN)/ruff check prefect_etl_blocks tests benchmarks

clean:
	rm -rf $(VENV) .venv-ducklake .venv-lowest .prefect-etl .petl site build dist .pytest_cache .hypothesis
