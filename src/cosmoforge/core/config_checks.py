"""Checks of a config's values that a JSON schema cannot express: no NaN or infinity, no
secret anywhere in it, and no output path among the project's own files. `validate_config` runs
them, the first two before the schema (so no schema message can quote a secret)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any


def non_finite_keys(value: Any, key: str = "") -> list[str]:
    """Dotted keys holding NaN or an infinity. JSON Schema's `number` admits them, and a NaN
    threshold compares false with everything: decontamination would silently find nothing."""
    if isinstance(value, float) and not math.isfinite(value):
        return [key or "<top level>"]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return []
    return [
        k
        for name, sub in items
        for k in non_finite_keys(sub, f"{key}.{name}" if key else str(name))
    ]


# Secrets are never config values: the resolved config is on every job's command line, in its
# log and in the run's records. A variable named like one of these (split at "_") or a value
# that starts like a known key format is refused before the schema can quote it.
_SECRET_NAME = re.compile(
    r"(^|_)(API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(_|$)", re.IGNORECASE
)
_SECRET_VALUE = re.compile(
    r"^(sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}"
    r"|xox[abpr]-[A-Za-z0-9-]{10,}|eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]+)"
)


def secret_problems(value: Any, key: str = "") -> list[str]:
    """Where the config holds something that looks like a secret, without quoting it."""
    if isinstance(value, dict):
        found = []
        for name, sub in value.items():
            sub_key = f"{key}.{name}" if key else str(name)
            if key == "engine.env" and _SECRET_NAME.search(str(name)):
                found.append(
                    f"{sub_key}: a secret is never set in the config (every job's command line "
                    f"and log would show it): export {name} where you start snakemake; local and "
                    "Slurm jobs inherit the environment"
                )
                continue
            found += secret_problems(sub, sub_key)
        return found
    if isinstance(value, list):
        return [p for i, sub in enumerate(value) for p in secret_problems(sub, f"{key}[{i}]")]
    if isinstance(value, str) and _SECRET_VALUE.match(value.strip()):
        return [
            f"{key}: the value given looks like an API key or token; a secret is never put in "
            "the config: export it as an environment variable (for the openai engine, name "
            "that variable in engine.openai.api_key_env)"
        ]
    return []


# Where the workflow may write besides results/<run>/ and logs/<run>/: the folder a model
# converted from a packaged GGUF goes to (shared by runs, so it is converted once).
CONVERTED_MODELS = Path("resources") / "models"


def output_path_problems(config: dict) -> list[str]:
    """Config values that name an output path among the project's own files. A converted
    model's folder is replaced by the conversion: relative to the working folder (the checkout)
    it must lie under resources/models/; an absolute path (a scratch disk) is the user's own."""
    if not config["model"].get("gguf"):
        return []
    path = Path(config["model"]["path"])
    prefix = CONVERTED_MODELS.parts
    if path.is_absolute() or (
        ".." not in path.parts
        and path.parts[: len(prefix)] == prefix
        and len(path.parts) > len(prefix)
    ):
        return []
    return [
        f"model.path: {path} is where the model converted from model.gguf is written (the "
        f"folder is replaced), so a relative path must be a folder under {CONVERTED_MODELS}/, "
        f"e.g. {CONVERTED_MODELS}/{Path(config['model']['name']).name.lower()}, or give an "
        "absolute path of your own"
    ]


def split_group_problems(config: dict) -> list[str]:
    """A split in two seeds.across_splits groups: which earlier split keeps a shared seed would
    depend on the order the groups are read in."""
    seen: dict[str, int] = {}
    problems = []
    for i, group in enumerate(config["seeds"]["across_splits"]):
        for split in group:
            if split in seen:
                problems.append(
                    f"seeds.across_splits[{i}]: '{split}' is already in group {seen[split]}; "
                    "a split may be in one group"
                )
            seen.setdefault(split, i)
    return problems
