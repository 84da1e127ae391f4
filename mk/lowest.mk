# The lowest leg: a venv with every dependency at its declared lower bound
# (ci/constraints-lowest.txt), running the tests listed in ci/lowest-leg.sh.
# Included from the Makefile: `include mk/lowest.mk`.
LOWEST_VENV ?= .venv-lowest

.PHONY: test-lowest

# ci/lowest-leg.sh builds the venv (with uv) when pyproject.toml or the constraints changed.
test-lowest:
	LOWEST_VENV=$(LOWEST_VENV) PYTHON=$(PYTHON) ci/lowest-leg.sh
