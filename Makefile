# lucidnet: `make demo` and `make test` work on a fresh machine with Python 3.11, pip and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LINTED := $(wildcard lucidnet tests benchmarks examples)

.PHONY: demo test lint imports typecheck install bench clean fuzz bench-messy

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lucidnet demo

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

imports: $(STAMP)  ## the import contract in pyproject.toml ([tool.importlinter])
	$(BIN)/lint-imports --no-logo

typecheck: $(STAMP)  ## mypy over the NumPy core ([tool.mypy] in pyproject.toml)
	$(BIN)/mypy

test: lint imports typecheck
	$(BIN)/python -m pytest

fuzz: $(STAMP)  ## the model-file fuzzer with a large budget (20,000 cases, ~5 min on 2 cores; `make test` runs 2,000)
	LUCIDNET_FUZZ_EXAMPLES=$${LUCIDNET_FUZZ_EXAMPLES:-20000} $(BIN)/python -m pytest -q -s tests/test_fuzz_model_files.py

bench:  ## CPU speed vs PyTorch / scikit-learn / JAX / plain NumPy (~4 min; writes benchmarks/RESULTS.md)
	@test -x .venv-bench/bin/python || ($(PYTHON) -m venv .venv-bench && .venv-bench/bin/python -m pip install --quiet -e . torch==2.13.0 jax jaxlib scikit-learn threadpoolctl)
	.venv-bench/bin/python benchmarks/run.py --markdown benchmarks/RESULTS.md

bench-messy: $(STAMP)  ## lucidnet with no options vs a hand-built scikit-learn MLP pipeline and HistGradientBoosting on the real files of ../shared/data (DATA_DIR=... to change; ~15-30 min on 2 shared cores; writes benchmarks/MESSY.md and .json)
	$(BIN)/python benchmarks/messy.py --data-dir $(or $(DATA_DIR),../shared/data) --markdown benchmarks/MESSY.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache build *.egg-info
