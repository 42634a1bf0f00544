"""How a command declares its arguments: `Command` (one `cosmoforge NAME`), and the argument
types the stages share.

A module that has commands lists them in `COMMANDS` (a tuple of `Command`); `cosmoforge.cli`
names each command's module in its table, so a command starts by importing only its own module.
Argument specs are `argparse.add_argument` keyword arguments keyed by flag (a key without
leading dashes is positional). The types below check a value with the config schema's rule for
the key it comes from, so a stage run by hand accepts exactly what a config would.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cosmoforge.core.config import check_setting, parse_config_args, resolve_config
from cosmoforge.core.contracts import SPLITS
from cosmoforge.core.errors import ConfigError, CosmoforgeError
from cosmoforge.core.layout import RunPaths


@dataclass(frozen=True)
class Command:
    """One `cosmoforge NAME` command: `run(args)` gets the parsed arguments.

    `stages`: a command of several stages (`dedup signatures`, `topics fit`, ...), each with
    exactly its own arguments beside the shared `arguments`; `args.stage` names the one run.
    """

    name: str
    help: str
    run: Callable[[argparse.Namespace], None]
    arguments: dict[str, dict] = field(default_factory=dict)
    description: str | None = None
    stages: dict[str, dict[str, dict]] | None = None


# --- argument types ----------------------------------------------------------------------------


def json_arg(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


def _checked(key: str, value):
    try:
        check_setting(key, value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (the config schema's rule)") from None
    return value


def config_value_arg(key: str, convert: Callable):
    """One value, checked by the schema's rule of config key `key`."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {convert.__name__}: {text!r}") from None
        return _checked(key, value)

    return parse


def settings_arg(section: str):
    """JSON settings that are one whole config `section`, checked by its schema (a stage whose
    settings gather keys from several places has a record in core.settings instead)."""

    def parse(text: str) -> dict:
        return _checked(section, json_arg(text))

    return parse


def count_arg(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def path_arg(help: str | None = None, **spec) -> dict:
    """A required path argument."""
    return {"required": True, "type": Path, **({"help": help} if help else {}), **spec}


def paths_arg(help: str | None = None, **spec) -> dict:
    """A required list of paths."""
    return path_arg(help, nargs="+", **spec)


SPLIT = {"required": True, "choices": SPLITS}


def split_and_path(text: str) -> tuple[str, str]:
    """A SPLIT=PATH argument: a split's name and one of its files."""
    split, sep, path = text.partition("=")
    if not sep or split not in SPLITS or not path:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected SPLIT=PATH with SPLIT one of {', '.join(SPLITS)}"
        )
    return split, path


# The commands that read a run's config take it as Snakemake does (cosmoforge.core.config
# resolve_config): so `cosmoforge plan --configfile A B --config run_name=x` describes exactly
# what `snakemake --configfile A B --config run_name=x` runs.
RUN_CONFIG = {
    "--configfile": {
        "nargs": "+",
        "type": Path,
        "default": [],
        "metavar": "FILE",
        "help": "config files, merged in order on the schema's defaults (as snakemake "
        "--configfile); none: the embedded default config/config.yaml",
    },
    "--config": {
        "nargs": "+",
        "default": [],
        "metavar": "KEY=VALUE",
        "help": "overrides on top of the files, read as snakemake --config reads them; an entry "
        "without '=' is a config file (taken after --configfile's)",
    },
    "--run-name": {"help": "overrides the config's run_name"},
}
BASE_DIR = {"--base-dir": {"default": ".", "type": Path, "help": "where relative paths start"}}


def run_config(args) -> dict:
    """The resolved config of `--configfile`/`--config` (and `--run-name`), as Snakemake would
    resolve the same arguments."""
    files = config_files(args)
    overrides = parse_config_args(c for c in args.config if "=" in c)
    if args.run_name:
        overrides["run_name"] = args.run_name
    return resolve_config(
        [f.absolute() for f in files], overrides, getattr(args, "base_dir", Path("."))
    )


def config_files(args) -> list[Path]:
    """The config files of `args` in order: --configfile's, then --config entries without '='."""
    return [*args.configfile, *(Path(c) for c in args.config if "=" not in c)]


def config_source(args) -> str:
    """The config files of `args`, for messages: 'preset.yaml + my.yaml'."""
    files = [str(f) for f in config_files(args)]
    return " + ".join(files) if files else "config/config.yaml"


# A run-wide job reads one file (or a few) per shard. The workflow passes `--shards`, where the
# run keeps them ({"run_name", "shards": {split: count}}), not a path per shard: the preset's
# 773 shards' paths make ~50-110 KB of command line, near Linux's 128 KB limit on one argument.
SHARDS = {
    "--shards": {
        "type": json_arg,
        "help": 'JSON: {"run_name", "shards": {split: count}}: each shard\'s files are read '
        "where the run keeps them (instead of the per-shard path lists)",
    }
}


def optional_paths(help: str) -> dict:
    """A list of paths that `--shards` may stand in for."""
    return {"nargs": "+", "type": Path, "help": f"{help} (or give --shards)"}


def per_shard_files(args, name: str, path_of: Callable[[RunPaths, str, str], str]) -> list:
    """The paths of `--NAME` if given, else `path_of(paths, split, shard)` for every shard of
    `--shards`, in canonical order."""
    given = getattr(args, name)
    if given:
        return list(given)
    if args.shards is None:
        raise CosmoforgeError(f"give --{name.replace('_', '-')} or --shards")
    shards = args.shards
    if not (
        isinstance(shards, dict)
        and isinstance(shards.get("run_name"), str)
        and isinstance(shards.get("shards"), dict)
        and all(isinstance(n, int) and n > 0 for n in shards["shards"].values())
    ):
        raise CosmoforgeError(
            '--shards: expected {"run_name": NAME, "shards": {SPLIT: COUNT, ...}} with counts '
            "of 1 or more"
        )
    paths = RunPaths.of_settings(shards)
    return [path_of(paths, split, shard) for split, shard in paths.gen_shards]
