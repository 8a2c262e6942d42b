# The two commands of the README: `make demo` and `make test`. Each creates .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch; a plain `torch` requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
PIP    := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: demo test lint typecheck pytest bench peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: $(BIN)/python pyproject.toml
	$(PIP) install "$(TORCH)" || $(PIP) install torch
	$(PIP) install -e ".[all]"
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps "molsets==0.3.1"
	touch $@

# Peers for benchmarks and optional tests. k-diffusion goes in without dependencies (its
# torchvision pin would replace torch); benchmarks stub the image helpers it never calls here.
$(VENV)/.peers: $(VENV)/.dev
	$(PIP) install -e ".[peers]"
	$(PIP) install --no-deps "k-diffusion==0.1.1.post1" "torchcfm==1.0.7" || true
	touch $@

demo: $(VENV)/.core
	$(BIN)/interpolant demo --out demo_out

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy

# The peers are installed so that the adapter tests check our steps against theirs.
pytest: $(VENV)/.peers
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadfile

test: lint typecheck pytest

peers: $(VENV)/.peers

bench: $(VENV)/.peers
	$(BIN)/python benchmarks/sampler_oracle.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache .mypy_cache .ruff_cache
