"""`cosmoforge check` and `cosmoforge config`: a run's config as Snakemake resolves it, and
whether everything it names exists, before anything runs."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from cosmoforge.core.config import check_inputs
from cosmoforge.core.contracts import is_local_dataset
from cosmoforge.core.declare import BASE_DIR, RUN_CONFIG, Command, config_source, run_config
from cosmoforge.core.errors import ConfigError
from cosmoforge.core.layout import stale_shard_files


def hub_source_notes(config: dict) -> list[str]:
    """One line per seed source that is a hub dataset id: it needs the hub when the seeds job
    runs (it is streamed), and whether a copy is in the local hub cache (whose snapshot folder
    a node without internet can read as a local source)."""
    from huggingface_hub import constants

    notes = []
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    for split, cfg in config["splits"].items():
        for i, source in enumerate(cfg["sources"]):
            name = source.get("dataset")
            if source["format"] != "hf" or is_local_dataset(name):
                continue
            cached = Path(constants.HF_HUB_CACHE) / f"datasets--{name.replace('/', '--')}"
            snapshots = sorted((cached / "snapshots").glob("*"))
            where = f"splits.{split}.sources[{i}].dataset: {name} is a hub dataset"
            if snapshots:
                # Streaming goes to the hub even when a copy is cached; the snapshot folder is a
                # folder of data files, which the seeds stage reads as a local source.
                state = (
                    "a copy is in the local hub cache: to read it without the hub, set "
                    f"dataset: {snapshots[-1]}"
                )
            else:
                state = f"no copy in the local hub cache ({constants.HF_HUB_CACHE})"
                if offline:
                    state += (
                        "; HF_HUB_OFFLINE is set here, so its seeds job would fail: download it "
                        "first, or give a local folder (format hf, dataset: ./folder)"
                    )
            notes.append(f"{where}: the seeds job streams it from the hub; {state}")
    return notes


# --- command line ------------------------------------------------------------------------------


def _check_command(args) -> None:
    config = run_config(args)
    problems = check_inputs(config, args.base_dir) + stale_shard_files(config, args.base_dir)
    for note in hub_source_notes(config):
        print(note, flush=True)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) to fix first:\n  " + "\n  ".join(problems))
    print(
        f"{config_source(args)}: valid; {len(config['splits'])} split(s), every configured "
        "local input exists"
    )


def _config_command(args) -> None:
    config = run_config(args)
    print(f"# resolved from {config_source(args)} on the schema's defaults", flush=True)
    print(yaml.safe_dump(config, sort_keys=False, width=100), end="")


COMMANDS = (
    Command(
        "check",
        "validate a config and check that its seed, template and benchmark files exist",
        _check_command,
        {**RUN_CONFIG, **BASE_DIR},
    ),
    Command(
        "config",
        "print the resolved config: the schema's defaults, the files in order, --config on top",
        _config_command,
        {**RUN_CONFIG, **BASE_DIR},
    ),
)
