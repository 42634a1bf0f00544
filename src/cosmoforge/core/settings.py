"""Each stage's settings as a typed record, declared once.

A rule hands its job the part of the config the stage depends on, as one JSON argument
(`--settings`), so Snakemake reruns a job exactly when that part changes. Where that part is a
whole config section (dedup, decontamination, quality, topics.kmeans, ...), the config schema
is its type. Where a stage gathers keys from several places (a split's sources with the
run-wide `on_bad_row`, a split's sampling merged over the global one, ...), its record is a
class below:

- the workflow builds it (`core.layout.Layout.*_settings`), by keyword, so a misspelt or
  forgotten field fails there and then;
- the command line parses it (`Settings.argument()` is the argparse spec of `--settings`, its
  help listing the fields): a field missing, unknown, or breaking the schema rule of the config
  key it comes from is one line naming it;
- the stage reads attributes, never keys of a dict whose shape is spelt elsewhere.

A stage function called from Python (tests, tools) may be given a plain mapping; `of()` turns it
into the record with the same checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from cosmoforge.core.config import check_setting
from cosmoforge.core.contracts import DEFAULT_TARGET_WORDS
from cosmoforge.core.errors import ConfigError


def setting(help: str, config_key: str | None = None, **kwargs) -> Any:
    """A field of a settings record: what it is, and the config key whose schema rule checks it
    (None: derived by the workflow, checked by the record's own `check`)."""
    return dataclasses.field(metadata={"help": help, "config_key": config_key}, **kwargs)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of the records below."""

    what: ClassVar[str] = "settings"

    @classmethod
    def of(cls, value: Settings | Mapping) -> Self:
        """The record from a mapping (JSON's), each field checked; a record is returned as is."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{cls.what}: expected a JSON object, not {type(value).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ConfigError(
                f"{cls.what}: unknown field(s) {', '.join(unknown)}; the fields are "
                f"{', '.join(fields)}"
            )
        missing = [
            name
            for name, f in fields.items()
            if name not in value
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"{cls.what}: missing field(s) {', '.join(missing)}")
        for name, item in value.items():
            key = fields[name].metadata["config_key"]
            if key is not None:
                check_setting(key, item)
        record = cls(**value)
        record.check()
        return record

    def check(self) -> None:
        """Checks of fields that no config key's rule covers (override where there are some)."""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def parse(cls, text: str) -> Self:
        """`--settings` JSON to the record (argparse's `type`)."""
        try:
            return cls.of(json.loads(text))
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    @classmethod
    def argument(cls) -> dict:
        """The argparse spec of `--settings` for this record."""
        fields = "; ".join(f"{f.name}: {f.metadata['help']}" for f in dataclasses.fields(cls))
        return {"required": True, "type": cls.parse, "help": f"JSON {{{fields}}}"}


@dataclasses.dataclass(frozen=True)
class SeedSettings(Settings):
    """The seeds stage of one split."""

    what: ClassVar[str] = "seeds settings"
    sources: list = setting("the split's seed sources", "splits.*.sources")
    on_bad_row: str = setting("skip or error", "seeds.on_bad_row", default="skip")
    max_seeds: int | str = setting("a number, or all", "splits.*.max_seeds", default="all")
    min_chars: dict = setting(
        "per seed kind, the shortest main field kept", "seeds.min_chars", default_factory=dict
    )
    max_chars: dict = setting(
        "per seed kind, the longest main field kept", "seeds.max_chars", default_factory=dict
    )
    repair_text: bool = setting(
        "fix mojibake and control characters", "seeds.repair_text", default=False
    )
    html_to_text: list = setting(
        "seed kinds whose fields may hold HTML", "seeds.html_to_text", default_factory=list
    )
    languages: dict = setting(
        "per seed kind, the languages kept", "seeds.languages", default_factory=dict
    )
    language_min_confidence: float = setting(
        "the language gate's least confidence", "seeds.language_min_confidence", default=0.9
    )
    yields_to: list = setting(
        "the splits before this one in its seeds.across_splits group, whose seeds it leaves out",
        default_factory=list,
    )


@dataclasses.dataclass(frozen=True)
class PromptSettings(Settings):
    """The prompts stage of one split."""

    what: ClassVar[str] = "prompts settings"
    seed: int = setting("the run's global seed", "seed")
    shards: int = setting("the split's shard count", "splits.*.shards")
    extract_chars: int = setting("characters of seed text per prompt", "splits.*.extract_chars")
    target_words: int = setting(
        "words asked for, from the split's max_tokens", default=DEFAULT_TARGET_WORDS
    )
    topic_probability: float = setting(
        "share of web prompts given their cluster's topic",
        "splits.*.topic_probability",
        default=1.0,
    )
    templates: list | None = setting(
        "template names, or null for every template of the split",
        "splits.*.templates",
        default=None,
    )

    def check(self) -> None:
        if not isinstance(self.target_words, int) or self.target_words < 1:
            raise ConfigError(f"{self.what}: target_words: {self.target_words!r} is not 1 or more")


@dataclasses.dataclass(frozen=True)
class GenerationSettings(Settings):
    """Generation of one shard (also what calibrate and canary run)."""

    what: ClassVar[str] = "generation settings"
    seed: int = setting("the run's global seed", "seed")
    model: dict = setting("the model section", "model")
    engine: dict = setting("the engine section", "engine")
    sampling: dict = setting("the split's sampling (global, then its overrides)", "sampling")


@dataclasses.dataclass(frozen=True)
class TopicLabelSettings(Settings):
    """Labelling the topic clusters with the model."""

    what: ClassVar[str] = "topic label settings"
    seed: int = setting("the run's global seed", "seed")
    k: int = setting("the number of clusters", "topics.kmeans.k")
    template: str = setting("the labelling template file", "topics.label.template")
    examples_per_cluster: int = setting(
        "member extracts shown per cluster", "topics.label.examples_per_cluster"
    )
    example_chars: int = setting("characters per extract", "topics.label.example_chars")
    max_attempts: int = setting("tries per cluster", "topics.label.max_attempts")
    structured: bool = setting("constrain the answer's shape", "topics.label.structured")
    sampling: dict = setting("the labelling sampling", "topics.label.sampling")
    model: dict = setting("the model section", "model")
    engine: dict = setting("the engine section", "engine")


@dataclasses.dataclass(frozen=True)
class CardSettings(Settings):
    """What the dataset card says about how the data was made."""

    what: ClassVar[str] = "card settings"
    run_name: str = setting("the run's name", "run_name")
    model: dict = setting("the model section", "model")
    engine: dict = setting("the engine section", "engine")
    sampling: dict = setting("each split's sampling, by split")

    def check(self) -> None:
        for split, sampling in self.sampling.items():
            if not isinstance(sampling, dict):
                raise ConfigError(f"{self.what}: sampling.{split}: expected a JSON object")
            check_setting("sampling", sampling)
