# The DuckLake leg: a second venv on DuckDB 1.5.5 with the [ducklake] extra (the DuckLake,
# postgres and httpfs extensions as pip wheels, so nothing is downloaded from DuckDB's servers).
# Included from the Makefile: `include mk/ducklake.mk`. ci/ducklake-venv.sh builds the venv when
# it is missing or out of date (the one place that says how); ci/ducklake-leg.sh runs it first.
DUCKLAKE_VENV ?= .venv-ducklake

.PHONY: ducklake-venv test-ducklake bench-ducklake

ducklake-venv:
	DUCKLAKE_VENV=$(DUCKLAKE_VENV) PYTHON=$(PYTHON) ci/ducklake-venv.sh

# ci/ducklake-leg.sh installs PostgreSQL from Debian when missing (as root) and runs `-m ducklake`.
test-ducklake:
	DUCKLAKE_VENV=$(DUCKLAKE_VENV) PYTHON=$(PYTHON) ci/ducklake-leg.sh

# Scale-out (bench_ducklake) and a load's fixed cost against native DuckLake (issue 22).
bench-ducklake: ducklake-venv
	$(DUCKLAKE_VENV)/bin/python -m benchmarks.bench_ducklake
	$(DUCKLAKE_VENV)/bin/python -m benchmarks.bench_ducklake_fixed_cost
