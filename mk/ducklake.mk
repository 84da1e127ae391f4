# The DuckLake leg: a second venv on DuckDB 1.5.5 with the [ducklake] extra (the DuckLake,
# postgres and httpfs extensions as pip wheels, so nothing is downloaded from DuckDB's servers).
# Included from the Makefile: `include mk/ducklake.mk`.
DUCKLAKE_VENV ?= .venv-ducklake
DUCKLAKE_DUCKDB := 1.5.5
DUCKLAKE_STAMP := $(DUCKLAKE_VENV)/.installed-$(DUCKLAKE_DUCKDB)

.PHONY: ducklake-venv test-ducklake bench-ducklake

$(DUCKLAKE_STAMP): pyproject.toml ci/constraints-newest.txt
	test -x $(DUCKLAKE_VENV)/bin/python || $(PYTHON) -m venv $(DUCKLAKE_VENV)
	test -x $(DUCKLAKE_VENV)/bin/uv || $(DUCKLAKE_VENV)/bin/python -m pip install --quiet uv
	$(DUCKLAKE_VENV)/bin/uv pip install --quiet --compile-bytecode --python $(DUCKLAKE_VENV)/bin/python \
	  --upgrade-package pip -c ci/constraints-newest.txt pip -e '.[dev,dask,ducklake]' \
	  'duckdb==$(DUCKLAKE_DUCKDB)' 'duckdb-extension-ducklake==$(DUCKLAKE_DUCKDB)' \
	  'duckdb-extension-postgres-scanner==$(DUCKLAKE_DUCKDB)' 'duckdb-extension-httpfs==$(DUCKLAKE_DUCKDB)'
	touch $(DUCKLAKE_STAMP)

ducklake-venv: $(DUCKLAKE_STAMP)

# ci/ducklake-leg.sh installs PostgreSQL from Debian when missing (as root) and runs `-m ducklake`.
test-ducklake: $(DUCKLAKE_STAMP)
	DUCKLAKE_VENV=$(DUCKLAKE_VENV) PYTHON=$(PYTHON) ci/ducklake-leg.sh

# Scale-out (bench_ducklake) and a load's fixed cost against native DuckLake (issue 22).
bench-ducklake: $(DUCKLAKE_STAMP)
	$(DUCKLAKE_VENV)/bin/python -m benchmarks.bench_ducklake
	$(DUCKLAKE_VENV)/bin/python -m benchmarks.bench_ducklake_fixed_cost
