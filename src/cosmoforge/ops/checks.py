"""`cosmoforge check` and `cosmoforge config`: a run's config as Snakemake resolves it, and
whether everything it names exists, before anything runs."""

from __future__ import annotations

import yaml

from cosmoforge.core.config import check_inputs
from cosmoforge.core.declare import BASE_DIR, RUN_CONFIG, Command, config_source, run_config
from cosmoforge.core.errors import ConfigError
from cosmoforge.core.layout import stale_shard_files

# --- command line ------------------------------------------------------------------------------


def _check_command(args) -> None:
    config = run_config(args)
    problems = check_inputs(config, args.base_dir) + stale_shard_files(config, args.base_dir)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) to fix first:\n  " + "\n  ".join(problems))
    print(
        f"{config_source(args)}: valid; {len(config['splits'])} split(s), every configured "
        "input exists"
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
