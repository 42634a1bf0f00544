#!/usr/bin/env bash
# Snakemake runs this once, inside the freshly made env, from the run's working directory (this
# checkout): it installs the cosmoforge package itself, editable, so every job of the env runs
# this checkout's code and no rule edits PYTHONPATH. Its dependencies are the env file's.
set -euo pipefail
if ! grep -qs '^name = "cosmoforge"' pyproject.toml; then
    echo "post-deploy: run snakemake from the cosmoforge checkout (no cosmoforge pyproject.toml in $PWD)" >&2
    exit 1
fi
python -m pip install --quiet --no-deps -e .
