#!/usr/bin/env bash
# Builds the DuckLake venv, `.venv-ducklake` (or $DUCKLAKE_VENV), when it is missing or older than
# pyproject.toml or ci/constraints-newest.txt: DuckDB 1.5.5, the newest DuckDB for which the
# DuckLake, postgres and httpfs extensions exist as pip wheels (none exist for 2.0, so on 2.0
# DuckLake needs the network). The one place that says how: ci/ducklake-leg.sh runs it before
# the tests, `make ducklake-venv` (and `make bench-ducklake`) on its own.
set -euo pipefail
source "$(dirname "$0")/common.sh"  # repository root, telemetry off, PYTHON

VENV="${DUCKLAKE_VENV:-.venv-ducklake}"
DUCKDB_VERSION="1.5.5"
STAMP="$VENV/.installed-$DUCKDB_VERSION"

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ ci/constraints-newest.txt -nt "$STAMP" ]; then
  test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
  test -x "$VENV/bin/uv" || "$VENV/bin/python" -m pip install --quiet uv
  # The [ducklake] extra pins the same set; they are also named here so the venv builds from a
  # checkout whose pyproject.toml predates the extra. uv, as for the other venvs: seconds, not
  # minutes; --compile-bytecode, as uv writes no .pyc files (see the Makefile).
  "$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$VENV/bin/python" --upgrade-package pip \
    -c ci/constraints-newest.txt pip \
    -e '.[dev,dask,ducklake]' \
    "duckdb==$DUCKDB_VERSION" \
    "duckdb-extension-ducklake==$DUCKDB_VERSION" \
    "duckdb-extension-postgres-scanner==$DUCKDB_VERSION" \
    "duckdb-extension-httpfs==$DUCKDB_VERSION"
  touch "$STAMP"
fi

"$VENV/bin/python" - <<PY
import duckdb
assert duckdb.__version__ == "$DUCKDB_VERSION", duckdb.__version__
PY
