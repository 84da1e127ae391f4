#!/usr/bin/env bash
# The "lowest" leg of CI: a third venv, `.venv-lowest`, with every dependency at the lower bound
# pyproject.toml declares (pinned by ci/constraints-lowest.txt; tests/test_versions.py keeps the
# two in agreement), so each bound is a version the suite passes on. Runs the tests that cover
# what the bounds matter for (LOWEST_TESTS below): loads of every frame kind, Parquet and
# incremental loads, the DuckDB block, the serializer and result storage, the blocks' Prefect
# contracts, the e-mail notifier (aiosmtplib at its lowest), the wings and lazy imports, the
# version checks, and the lock file between processes (DuckDB 1.5 reads its headers under its
# own lock, 2.0 before it: tests/test_process_lock.py expects each). The newest leg (.venv)
# runs everything; the DuckLake leg runs DuckDB 1.5.5.
#
# Usage: ci/lowest-leg.sh [extra pytest args]      (make test-lowest runs it)
# Installs with uv (from the package index, into the venv): much faster than pip's resolver;
# --compile-bytecode, as uv writes no .pyc files and PYTHONDONTWRITEBYTECODE may be set: every
# process would otherwise compile every module it imports (twice the import time).
set -euo pipefail
source "$(dirname "$0")/common.sh"  # repository root, telemetry off, PYTHON

VENV="${LOWEST_VENV:-.venv-lowest}"
CONSTRAINTS=ci/constraints-lowest.txt
STAMP="$VENV/.installed-lowest"
LOWEST_TESTS=(
  tests/test_versions.py
  tests/test_loading.py
  tests/test_duckdb.py
  tests/test_parquet.py
  tests/test_incremental.py
  tests/test_serializers.py
  tests/test_results.py
  tests/test_block_standards.py
  tests/test_database_block_conformance.py
  tests/test_cursor_types.py
  tests/test_incremental_identity.py
  tests/test_signed_storage.py
  tests/test_notifications.py
  tests/test_architecture.py
  tests/test_process_lock.py
)

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ "$CONSTRAINTS" -nt "$STAMP" ]; then
  started=$SECONDS
  test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
  test -x "$VENV/bin/uv" || "$VENV/bin/python" -m pip install --quiet uv
  "$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$VENV/bin/python" -e '.[dev]' -c "$CONSTRAINTS"
  touch "$STAMP"
  echo "lowest leg: installed in $((SECONDS - started)) s"
fi

# The leg is only honest if it runs the pins: refuse to go on when any installed version differs.
"$VENV/bin/python" - "$CONSTRAINTS" <<'PY'
import re
import sys
from importlib.metadata import version

pins = re.findall(r"(?m)^([A-Za-z0-9_.-]+)==(\S+)$", open(sys.argv[1]).read())
wrong = [f"{name} {version(name)} (pinned {pin})" for name, pin in pins if version(name) != pin]
if wrong:
    sys.exit("lowest leg: installed versions differ from ci/constraints-lowest.txt: " + ", ".join(wrong))
print("lowest leg: " + ", ".join(f"{name} {pin}" for name, pin in pins))
PY
started=$SECONDS
status=0
"$VENV/bin/python" -m pytest -n 2 --dist loadgroup -m "not slow and not ducklake" "${LOWEST_TESTS[@]}" "$@" || status=$?
echo "lowest leg: tests ran in $((SECONDS - started)) s"
exit $status
