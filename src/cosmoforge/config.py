"""Load and validate the workflow config outside Snakemake (CLI, tests, benchmarks).

The same JSON schema is used by the Snakefile's ``validate``; defaults are filled in the same way
(recursively, as snakemake.utils.validate(set_default=True) does).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .declare import BASE_DIR, Command, path_arg
from .errors import ConfigError, yaml_error_line
from .seeds import KINDS

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


def _validator_with_defaults(schema: dict) -> jsonschema.protocols.Validator:
    base = jsonschema.validators.validator_for(schema)
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})(schema)


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


# Sections renamed since the first release (old -> new, why): a config that still uses an old
# name gets one line saying what to rename, not a schema error about an unknown key.
RENAMED_KEYS = {
    "cluster": (
        "slurm",
        "the Slurm resources section; 'cluster' also named the MinHash and k-means clusters",
    ),
}


def check_renamed_keys(config: dict, source: str = "config") -> None:
    for old, (new, why) in RENAMED_KEYS.items():
        if isinstance(config, dict) and old in config:
            raise ConfigError(f"{source}: '{old}' is now called '{new}' ({why}); rename it")


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate ``config`` in place, filling defaults; raise ConfigError naming the key."""
    check_renamed_keys(config, source)
    validator = _validator_with_defaults(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"{source}: {key}: {err.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def schema_for(key: str) -> dict:
    """The schema of one config key, dotted ("decontamination.threshold"; "splits.*.shards"
    for any split), with the definitions it refers to."""
    root = load_schema()
    node = root
    for part in key.split("."):
        while "$ref" in node:
            node = root["$defs"][node["$ref"].split("/")[-1]]
        properties = node.get("properties", {})
        if part == "*":
            node = next(iter(properties.values()))
        elif part in properties:
            node = properties[part]
        else:
            raise KeyError(f"no config key {key!r} in the schema")
    return {**node, "$defs": root["$defs"]}


def check_setting(key: str, value: Any) -> None:
    """Check one value with the config schema's rule for `key`; ConfigError names the key."""
    schema = schema_for(key)
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = ".".join([key, *(str(p) for p in error.absolute_path)])
        raise ConfigError(f"{where}: {error.message}")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_line(path, exc)) from exc
    if overrides:
        config = deep_merge(config, overrides)
    return validate_config(config, source=str(path))


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def split_sampling(config: dict, split: str) -> dict:
    """Global sampling parameters with the split's overrides applied."""
    params = dict(config["sampling"])
    params.update(config["splits"][split].get("sampling", {}))
    return params


def split_extract_chars(config: dict, split: str) -> int:
    return config["splits"][split].get("extract_chars") or config["seeds"]["extract_chars"]


def clustered_splits(config: dict) -> list[str]:
    """The splits whose web seeds are topic-clustered (together, one set of clusters)."""
    topics = config["topics"]
    if not topics["enabled"]:
        return []
    web = [
        s for s, cfg in config["splits"].items() if any(x["kind"] == "web" for x in cfg["sources"])
    ]
    if topics["splits"] is None:
        return web
    wrong = [s for s in topics["splits"] if s not in web]
    if wrong:
        raise ConfigError(f"topics.splits: {wrong} are not configured splits with a web source")
    return list(topics["splits"])


def check_inputs(config: dict, base_dir: str | Path = ".") -> list[str]:
    """Every configured input that must exist on disk, checked right after validation: a
    mistyped path must stop the run, not let Snakemake reuse results made from the old one.
    One line per missing input, naming the config key."""
    base = Path(base_dir)
    errors = []

    def missing(path: str) -> bool:
        p = Path(path)
        return not (p if p.is_absolute() else base / p).exists()

    for split, cfg in config["splits"].items():
        for i, source in enumerate(cfg["sources"]):
            if source["format"] != "hf" and missing(source["path"]):
                required, _ = KINDS[source["kind"]]
                fields = {f: source.get("fields", {}).get(f, f) for f in required}
                errors.append(
                    f"config: splits.{split}.sources[{i}].path: no such file {source['path']} "
                    f"(a {source['format']} file of {source['kind']} seeds with fields "
                    f"{', '.join(fields.values())}; see config/README.md, seed sources)"
                )
        folder = Path(config["prompts_dir"]) / split
        for i, name in enumerate(cfg.get("templates") or []):
            if missing(str(folder / f"{name}.yaml")):
                errors.append(
                    f"config: splits.{split}.templates[{i}]: no such template {folder}/{name}.yaml"
                )
        if cfg.get("templates") is None and missing(str(folder)):
            errors.append(f"config: splits.{split}: no template folder {folder}")
    for name, bench in config["decontamination"]["benchmarks"].items():
        if "path" in bench and missing(bench["path"]):
            errors.append(
                f"config: decontamination.benchmarks.{name}.path: no such file {bench['path']}"
            )
    if missing(config["quality"]["patterns"]):
        errors.append(f"config: quality.patterns: no such file {config['quality']['patterns']}")
    if config["topics"]["enabled"] and clustered_splits(config):
        template = config["topics"]["label"]["template"]
        if missing(template):
            errors.append(f"config: topics.label.template: no such file {template}")
    return errors


# --- command line ------------------------------------------------------------------------------


def _check_command(args) -> None:
    config = load_config(args.config)
    missing = check_inputs(config, args.base_dir)
    if missing:
        raise ConfigError(f"{len(missing)} configured input(s) missing:\n  " + "\n  ".join(missing))
    print(f"{args.config}: valid; {len(config['splits'])} split(s), every configured input exists")


COMMANDS = (
    Command(
        "check",
        "validate a config and check that its seed, template and benchmark files exist",
        _check_command,
        {"--config": path_arg("the config file"), **BASE_DIR},
    ),
)
