"""The one way a run's config is resolved: by Snakemake (workflow/rules/common.smk), by every
cosmoforge command that reads a run's config (check, plan, status, explain, serve, config), by the
tests and by the benchmarks.

Resolution, in this order (later wins; mappings merge key by key, anything else is replaced):

1. the schema's defaults (schemas/config.schema.yaml, shipped in the package);
2. the config files given (Snakemake's ``--configfile A B``, cosmoforge's ``--configfile``), in
   the order given; with none, the embedded default ``config/config.yaml`` (the CPU demo);
3. ``--config KEY=VALUE`` entries, parsed the way Snakemake parses them.

A file given is never merged over the embedded default: the preset and a user's own file get the
schema's defaults for every key they leave out, not the demo's caps and CPU engine settings.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cosmoforge.core.config_checks import (
    non_finite_keys,
    output_path_problems,
    secret_problems,
    split_group_problems,
)
from cosmoforge.core.contracts import KINDS, is_local_dataset
from cosmoforge.core.errors import ConfigError, yaml_error_line

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"
# The config of a run that names no config file: the CPU demo on the bundled seeds.
EMBEDDED_DEFAULT = Path("config") / "config.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _mapping_without_repeats(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} is given twice in one mapping (first on line {seen[key] + 1}); "
                "keep one",
                mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats
)


def read_config_file(path: str | Path) -> dict:
    """One config file as a mapping; ConfigError names the file (and line, for bad YAML)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a config file")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_line(path, exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config file holds a mapping of keys, not a {type(data).__name__}"
        )
    return data


def _snakemake_bool(text: str) -> bool:
    if text == "True":
        return True
    if text == "False":
        return False
    raise ValueError(text)


# Snakemake's `--config KEY=VALUE` (snakemake.cli.parse_config): KEY is a top-level identifier,
# VALUE the first of int, float, True/False, YAML read without type resolution (so nested
# values stay strings), str that parses. tests/test_config.py compares the two on examples.
_CONFIG_KEY = re.compile(r"[a-zA-Z_][\w-]*\w$")
_VALUE_PARSERS = (
    int,
    float,
    _snakemake_bool,
    lambda s: yaml.load(s, Loader=yaml.loader.BaseLoader),
    str,
)


def parse_config_args(entries: Iterable[str]) -> dict:
    """`--config` entries (KEY=VALUE) as Snakemake reads them."""
    overrides: dict = {}
    for entry in entries:
        key, sep, text = entry.partition("=")
        if not sep:
            raise ConfigError(f"--config {entry}: expected KEY=VALUE")
        if not _CONFIG_KEY.match(key):
            raise ConfigError(
                f"--config {entry}: the key must be a top-level config key (Snakemake takes "
                "two or more letters, digits, _ or -, starting with a letter or _)"
            )
        if text == "":
            overrides[key] = None
            continue
        for parse in _VALUE_PARSERS:
            try:
                value = parse(text)
            except Exception:  # noqa: BLE001 - Snakemake tries each parser the same way
                continue
            if not callable(value):
                break
        overrides[key] = value
    return overrides


def resolve_config(
    files: Sequence[str | Path] = (),
    overrides: dict | None = None,
    base_dir: str | Path = ".",
) -> dict:
    """The validated config of a run: the schema's defaults, then `files` in order (the
    embedded default when there are none), then `overrides` (already parsed --config values).

    Relative file paths start at `base_dir` (Snakemake's working directory).
    """
    base = Path(base_dir)
    paths = [Path(f) if Path(f).is_absolute() else base / f for f in files]
    if not paths:
        paths = [base / EMBEDDED_DEFAULT]
    merged: dict = {}
    for path in paths:
        merged = deep_merge(merged, read_config_file(path))
    if overrides:
        merged = deep_merge(merged, dict(overrides))
    source = " + ".join(str(f) for f in (files or [EMBEDDED_DEFAULT]))
    if overrides:
        source += " + --config"
    return validate_config(merged, source=source)


@functools.cache
def _validator_with_defaults() -> jsonschema.protocols.Validator:
    schema = load_schema()
    base = jsonschema.validators.validator_for(schema)
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})(schema)


@functools.cache
def load_schema() -> dict:
    """The config schema, parsed once per process (read-only: callers share it)."""
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


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


def error_text(err: jsonschema.ValidationError) -> str:
    """A schema error in words: the rule's own hint (x-hint) where it has one, and never the
    value of a rule marked x-secret (an API key pasted in the wrong place)."""
    schema = err.schema if isinstance(err.schema, dict) else {}
    shown = "the value given" if schema.get("x-secret") else repr(err.instance)
    if schema.get("x-hint"):
        return f"{shown} {schema['x-hint']}"
    return f"{shown} is not allowed here" if schema.get("x-secret") else err.message


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate ``config`` in place, filling defaults; raise ConfigError naming the key."""
    check_renamed_keys(config, source)
    lines = [f"{source}: {line}" for line in secret_problems(config)]
    lines += [f"{source}: {key}: must be a finite number" for key in non_finite_keys(config)]
    if not lines:
        validator = _validator_with_defaults()
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
        for err in errors:
            key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"{source}: {key}: {error_text(err)}")
    if not lines:
        problems = output_path_problems(config) + split_group_problems(config)
        lines = [f"{source}: {line}" for line in problems]
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def schema_for(key: str) -> dict:
    """The schema of one config key, dotted ("decontamination.threshold"; "splits.*.shards"
    for any split; a number for an item of a list, "splits.stories.sources.0.path"; the key of
    a mapping such as engine.env), with the definitions it refers to."""
    root = load_schema()

    def resolved(node: dict) -> dict:
        while "$ref" in node:
            node = root["$defs"][node["$ref"].split("/")[-1]]
        return node

    node = root
    for part in key.split("."):
        node = resolved(node)
        properties = node.get("properties", {})
        if part == "*":
            node = next(iter(properties.values()))
        elif part in properties:
            node = properties[part]
        elif part.isdigit() and isinstance(node.get("items"), dict):
            node = node["items"]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            raise KeyError(f"no config key {key!r} in the schema")
    return {**resolved(node), "$defs": root["$defs"]}


def check_setting(key: str, value: Any) -> None:
    """Check one value with the config schema's rule for `key`; ConfigError names the key."""
    bad = non_finite_keys(value, key)
    if bad:
        raise ConfigError(f"{bad[0]}: must be a finite number")
    schema = schema_for(key)
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = ".".join([key, *(str(p) for p in error.absolute_path)])
        raise ConfigError(f"{where}: {error_text(error)}")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict:
    """One config file resolved on the schema's defaults (resolve_config with one file)."""
    return resolve_config([path], overrides)


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
        try:
            return not (p if p.is_absolute() else base / p).exists()
        except OSError:  # a name too long for the file system: nothing there to read
            return True

    for split, cfg in config["splits"].items():
        errors += _source_problems(split, cfg["sources"], base)
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


def _source_problems(split: str, sources: list[dict], base: Path) -> list[str]:
    """A split's seed sources: names unique, local files present and files, not folders."""
    errors = []
    names: dict[str, int] = {}
    for i, source in enumerate(sources):
        first = names.setdefault(source["name"], i)
        if first != i:
            errors.append(
                f"config: splits.{split}.sources[{i}].name: {source['name']!r} is also the "
                f"name of sources[{first}]; give each source its own name (it starts the "
                "source's seed ids)"
            )
        if source["format"] == "hf":
            name = source["dataset"]
            local = Path(name).expanduser()
            if (
                is_local_dataset(name)
                and not (local if local.is_absolute() else base / local).is_dir()
            ):
                errors.append(
                    f"config: splits.{split}.sources[{i}].dataset: no such folder {name} (a "
                    "local datasets source is a folder of data files or a save_to_disk folder; "
                    "a hub id is org/name)"
                )
            continue
        where = (
            Path(source["path"]) if Path(source["path"]).is_absolute() else base / source["path"]
        )
        try:
            where.stat()
        except FileNotFoundError:
            pass
        except OSError as exc:  # a name too long, a loop of links: no file to read either
            errors.append(
                f"config: splits.{split}.sources[{i}].path: cannot be read ({exc.strerror})"
            )
            continue
        if where.is_dir():
            errors.append(
                f"config: splits.{split}.sources[{i}].path: {source['path']} is a folder; "
                f"name a {source['format']} file (a folder of data files is format hf)"
            )
        elif not where.exists():
            required, _ = KINDS[source["kind"]]
            fields = {f: source.get("fields", {}).get(f, f) for f in required}
            errors.append(
                f"config: splits.{split}.sources[{i}].path: no such file {source['path']} "
                f"(a {source['format']} file of {source['kind']} seeds with fields "
                f"{', '.join(fields.values())}; see config/README.md, seed sources)"
            )
    return errors
