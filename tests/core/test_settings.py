"""Each stage's typed settings: built by the workflow, parsed by the command line, one line for a
field that is missing, unknown or breaks its config key's rule."""

import dataclasses

import pytest

from cosmoforge.cli import build_parser
from cosmoforge.core.config import load_config
from cosmoforge.core.errors import ConfigError
from cosmoforge.core.layout import Layout, as_json
from cosmoforge.core.settings import (
    CardSettings,
    GenerationSettings,
    PromptSettings,
    SeedSettings,
)


@pytest.mark.parametrize("config_file", ["config/config.yaml", "config/presets/cosmopedia.yaml"])
def test_what_the_workflow_builds_is_what_the_command_line_reads_back(repo, config_file):
    layout = Layout(load_config(repo / config_file))
    records = [layout.card_settings(), layout.topic_label_settings(), layout.generate_settings()]
    for split in layout.splits:
        records += [
            layout.seeds_settings(split),
            layout.prompts_settings(split),
            layout.generate_settings(split),
        ]
    for record in records:
        assert type(record).parse(as_json(record)) == record


def test_the_settings_argument_is_built_from_the_record():
    spec = PromptSettings.argument()
    assert spec["required"] and spec["type"] == PromptSettings.parse
    names = [f.name for f in dataclasses.fields(PromptSettings)]
    assert names == [
        "seed",
        "shards",
        "extract_chars",
        "target_words",
        "topic_probability",
        "templates",
    ]
    for name in names:
        assert f"{name}: " in spec["help"]


PROMPTS = {"seed": 1, "shards": 2, "extract_chars": 1000}
WEB = {"name": "web", "kind": "web", "format": "jsonl", "path": "web.jsonl"}


@pytest.mark.parametrize(
    ("record", "value", "message"),
    [
        (PromptSettings, {**PROMPTS, "shard": 3}, r"prompts settings: unknown field\(s\) shard; "),
        (PromptSettings, {"seed": 1}, r"missing field\(s\) shards, extract_chars$"),
        (PromptSettings, {**PROMPTS, "shards": 0}, r"^splits.\*.shards: 0 is less than"),
        (PromptSettings, {**PROMPTS, "target_words": 0}, r"target_words: 0 is not 1 or more"),
        (SeedSettings, {"sources": [], "on_bad_row": "skip"}, r"^splits.\*.sources: \[\] should"),
        (SeedSettings, {"sources": [WEB], "on_bad_row": "maybe"}, r"^seeds.on_bad_row: 'maybe'"),
        (GenerationSettings, [], r"generation settings: expected a JSON object, not list"),
        (
            CardSettings,
            {
                "run_name": "r",
                "model": {"name": "m", "path": "p"},
                "engine": {},
                "sampling": {"stories": 3},
            },
            r"card settings: sampling.stories: expected",
        ),
    ],
)
def test_a_bad_field_is_one_line_naming_it(record, value, message):
    with pytest.raises(ConfigError, match=message):
        record.of(value)


def test_a_record_is_taken_as_it_is_and_a_mapping_gets_the_defaults():
    record = PromptSettings.of(PROMPTS)
    assert PromptSettings.of(record) is record
    assert (record.topic_probability, record.templates) == (1.0, None)


def test_the_command_line_names_the_flag_and_the_field(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(
            [
                "prompts",
                "--split",
                "stories",
                "--seeds",
                "s",
                "--prompts-dir",
                "p",
                "--settings",
                '{"seed": 1}',
                "--out-dir",
                "o",
                "--report",
                "r",
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(
        "argument --settings: prompts settings: missing field(s) shards, extract_chars"
    )
