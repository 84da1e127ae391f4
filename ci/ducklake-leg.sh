#!/usr/bin/env bash
# The DuckLake leg of CI: the tests marked `ducklake`, in the DuckLake venv (`.venv-ducklake`, on
# DuckDB 1.5.5, built by ci/ducklake-venv.sh), offline: the extensions are INSTALLed from their
# pip wheels by prefect_etl_blocks.extensions.
#
# Usage: ci/ducklake-leg.sh [extra pytest args]      (make test-ducklake runs it)
# Needs Debian's `postgresql` (PostgreSQL catalog) on the machine; installs it when run as root.
set -euo pipefail
source "$(dirname "$0")/common.sh"  # repository root, telemetry off, PYTHON

VENV="${DUCKLAKE_VENV:-.venv-ducklake}"

if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL missing: install Debian's 'postgresql' package (apt-get install postgresql)" >&2
    exit 1
  fi
fi

DUCKLAKE_VENV="$VENV" PYTHON="$PYTHON" ci/ducklake-venv.sh  # builds the venv when out of date
# -p registers the `ducklake` marker even before pyproject.toml lists it (harmless after).
exec "$VENV/bin/python" -m pytest -p tests.fixtures.postgres -m ducklake -n 2 --dist loadgroup -p no:randomly "$@"
