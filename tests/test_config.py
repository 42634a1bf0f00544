import copy
import re

import pytest
import yaml

from cosmoforge import SPLITS
from cosmoforge.config import load_config, validate_config
from cosmoforge.errors import ConfigError


def test_default_config_covers_all_splits_and_fills_defaults(repo):
    config = load_config(repo / "config" / "config.yaml")
    assert set(config["splits"]) == set(SPLITS)
    assert config["engine"]["backend"] == "vllm"  # never the fake engine by default
    assert config["splits"]["stories"]["shards"] == 1  # default filled in
    assert config["splits"]["web_samples_v2"]["topic_probability"] == 0.5
    assert config["release"]["drop_truncated"] is False


def test_preset_validates(repo):
    config = load_config(repo / "config" / "presets" / "cosmopedia.yaml")
    assert config["model"]["name"] == "mistralai/Mixtral-8x7B-Instruct-v0.1"
    assert config["engine"]["tensor_parallel_size"] >= 2
    assert config["sampling"] == {
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 50,
        "repetition_penalty": 1.2,
        "max_tokens": 2500,
    }
    assert config["release"]["min_token_length"] == 150


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["splits"].update(unknown_split={"sources": []}), "splits"),
        (lambda c: c["sampling"].update(temperature=-1), "sampling.temperature"),
        (lambda c: c["splits"]["wikihow"]["sources"][0].pop("path"), "splits.wikihow.sources.0"),
        (lambda c: c["seeds"].update(on_bad_row="ignore"), "seeds.on_bad_row"),
        (lambda c: c["engine"].update(backend="tgi"), "engine.backend"),
    ],
)
def test_bad_config_names_the_key(default_config_raw, mutate, key):
    config = copy.deepcopy(default_config_raw)
    mutate(config)
    with pytest.raises(ConfigError) as err:
        validate_config(config, source="my.yaml")
    assert f"my.yaml: {key}" in str(err.value)


def test_unreadable_config_file_is_named(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("splits: [unclosed\n")
    with pytest.raises(
        ConfigError, match=r"c.yaml: line 2, column 1: not valid YAML \(while parsing"
    ):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def readme_rows(readme: str) -> dict[str, set[str]]:
    """The keys in the first column of each section's tables: {section heading: keys}."""
    rows: dict[str, set[str]] = {}
    section = None
    for line in readme.splitlines():
        heading = re.match(r"^#{2,3} (.+)$", line)
        if heading:
            section = heading.group(1).split(" (")[0].strip("`")
            rows.setdefault(section, set())
        key = re.match(r"^\| `([^`]+)` \|", line)
        if key and section:
            rows[section].add(key.group(1))
    return rows


def nested_keys(spec: dict) -> set[str]:
    """A section's keys, and those of its sub-objects as `parent.key` (one level: deeper
    mappings such as topics.label.sampling are documented as one row)."""
    keys = set()
    for key, sub in spec.get("properties", {}).items():
        keys.add(key)
        if sub.get("type") == "object":
            keys |= {f"{key}.{k}" for k in sub.get("properties", {})}
    return keys


def schema_sections(schema: dict) -> dict[str, set[str]]:
    """README section -> the schema keys it must have a row for."""
    props, defs = schema["properties"], schema["$defs"]
    sections = {
        "Top level": set(props),
        "splits.<split>": set(defs["split"]["properties"]),
        "A source": set(defs["source"]["properties"]),
        "sampling": set(defs["sampling"]["properties"]),
    }
    for name in (
        "seeds",
        "model",
        "release",
        "quality",
        "topics",
        "dedup",
        "decontamination",
        "slurm",
    ):
        sections[name] = nested_keys(props[name])
    engine = props["engine"]
    sections["engine"] = set(engine["properties"]) - {"openai"}  # a section of its own
    sections["engine.openai"] = set(engine["properties"]["openai"]["properties"])
    return sections


def test_config_readme_documents_every_key(repo):
    """config/README.md has a row for every key of the schema, in that key's own section (so a
    deleted row fails even for a key named like one in another section: name, path, seed)."""
    schema = yaml.safe_load((repo / "workflow" / "schemas" / "config.schema.yaml").read_text())
    rows = readme_rows((repo / "config" / "README.md").read_text())
    missing = {
        section: sorted(keys - rows.get(section, set()))
        for section, keys in schema_sections(schema).items()
        if keys - rows.get(section, set())
    }
    assert not missing, f"config/README.md has no row for: {missing}"


def test_a_deleted_row_of_a_generic_key_is_noticed(repo):
    schema = yaml.safe_load((repo / "workflow" / "schemas" / "config.schema.yaml").read_text())
    readme = (repo / "config" / "README.md").read_text()
    model = readme.index("## `model`")
    row = readme.index("| `path` |", model)  # model.path; `path` is also a source key
    edited = readme[:row] + readme[readme.index("\n", row) + 1 :]
    rows = readme_rows(edited)
    assert "path" in rows["A source"] and "path" not in rows["model"]
    assert "path" in schema_sections(schema)["model"]


def test_missing_inputs_are_named_by_config_key(repo, default_config_raw):
    from cosmoforge.config import check_inputs

    config = validate_config(copy.deepcopy(default_config_raw))
    assert check_inputs(config, repo) == []
    config["splits"]["wikihow"]["sources"][0]["path"] = "resources/seeds/wikihow_titels.jsonl"
    config["splits"]["stories"]["templates"] = ["ultrachat_young_children_story", "no_such"]
    config["decontamination"]["benchmarks"]["mmlu"]["path"] = "nowhere/mmlu.jsonl"
    errors = check_inputs(config, repo)
    seeds = next(e for e in errors if "wikihow" in e)
    assert seeds.startswith(
        "config: splits.wikihow.sources[0].path: no such file resources/seeds/wikihow_titels.jsonl"
    )
    assert "fields title" in seeds
    assert (
        "config: splits.stories.templates[1]: no such template prompts/stories/no_such.yaml"
        in errors
    )
    assert "config: decontamination.benchmarks.mmlu.path: no such file nowhere/mmlu.jsonl" in errors
    assert len(errors) == 3


@pytest.mark.dryrun
def test_a_mistyped_seed_path_stops_the_dry_run_even_with_old_results(repo, tmp_path):
    """Snakemake alone would drop the seeds job (its input is missing, its old output exists)
    and report success on the old seeds."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    overlay = tmp_path / "typo.yaml"
    overlay.write_text(
        "splits:\n  wikihow:\n    sources:\n      - {name: wikihow, kind: wikihow, format: jsonl,"
        " path: resources/seeds/wikihow_titels.jsonl}\n"
    )
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bin_dir / "snakemake"), "-n", "--configfile", "config/config.yaml", str(overlay)],
        cwd=repo,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert (
        "config: splits.wikihow.sources[0].path: no such file "
        "resources/seeds/wikihow_titels.jsonl" in proc.stdout + proc.stderr
    )
