# Sourced by the CI legs (ci/lowest-leg.sh, ci/ducklake-leg.sh) after their `set -euo pipefail`:
# runs from the repository root, with Prefect's telemetry off and time for the ephemeral server
# to start (9-26 s on a 2-core machine), and the interpreter that creates a leg's venv in PYTHON.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export DO_NOT_TRACK=1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120
PYTHON="${PYTHON:-python3}"
