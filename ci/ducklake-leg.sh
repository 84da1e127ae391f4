#!/usr/bin/env bash
# The DuckLake leg of CI: a second venv, `.venv-ducklake`, on DuckDB 1.5.5, the newest DuckDB for
# which the DuckLake, postgres and httpfs extensions exist as pip wheels (none exist for 2.0, so
# on 2.0 DuckLake needs the network). Runs the tests marked `ducklake` there, offline: the
# extensions are INSTALLed from the wheels by prefect_etl_blocks.extensions.
#
# Usage: ci/ducklake-leg.sh [extra pytest args]      (make test-ducklake runs it)
# Needs Debian's `postgresql` (PostgreSQL catalog) on the machine; installs it when run as root.
set -euo pipefail
source "$(dirname "$0")/common.sh"  # repository root, telemetry off, PYTHON

VENV="${DUCKLAKE_VENV:-.venv-ducklake}"
DUCKDB_VERSION="1.5.5"
STAMP="$VENV/.installed-$DUCKDB_VERSION"

if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL missing: install Debian's 'postgresql' package (apt-get install postgresql)" >&2
    exit 1
  fi
fi

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ ci/constraints-newest.txt -nt "$STAMP" ]; then
  test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
  test -x "$VENV/bin/uv" || "$VENV/bin/python" -m pip install --quiet uv
  # The [ducklake] extra pins the same set; they are also named here so the leg works on a
  # checkout whose pyproject.toml predates the extra. uv, as for the other venvs: seconds, not
  # minutes.
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
# -p registers the `ducklake` marker even before pyproject.toml lists it (harmless after).
exec "$VENV/bin/python" -m pytest -p tests.fixtures.postgres -m ducklake -n 2 --dist loadgroup -p no:randomly "$@"
