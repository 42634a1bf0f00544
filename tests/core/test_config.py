import copy
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cosmoforge import SPLITS
from cosmoforge.core.config import load_config, validate_config
from cosmoforge.core.errors import ConfigError


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
        "calibrate",
    ):
        sections[name] = nested_keys(props[name])
    engine = props["engine"]
    sections["engine"] = set(engine["properties"]) - {"openai"}  # a section of its own
    sections["engine.openai"] = set(engine["properties"]["openai"]["properties"])
    return sections


def test_config_readme_documents_every_key(repo):
    """config/README.md has a row for every key of the schema, in that key's own section (so a
    deleted row fails even for a key named like one in another section: name, path, seed)."""
    schema = yaml.safe_load(
        (repo / "src" / "cosmoforge" / "core" / "schemas" / "config.schema.yaml").read_text()
    )
    rows = readme_rows((repo / "config" / "README.md").read_text())
    missing = {
        section: sorted(keys - rows.get(section, set()))
        for section, keys in schema_sections(schema).items()
        if keys - rows.get(section, set())
    }
    assert not missing, f"config/README.md has no row for: {missing}"


def test_a_deleted_row_of_a_generic_key_is_noticed(repo):
    schema = yaml.safe_load(
        (repo / "src" / "cosmoforge" / "core" / "schemas" / "config.schema.yaml").read_text()
    )
    readme = (repo / "config" / "README.md").read_text()
    model = readme.index("## `model`")
    row = readme.index("| `path` |", model)  # model.path; `path` is also a source key
    edited = readme[:row] + readme[readme.index("\n", row) + 1 :]
    rows = readme_rows(edited)
    assert "path" in rows["A source"] and "path" not in rows["model"]
    assert "path" in schema_sections(schema)["model"]


def test_missing_inputs_are_named_by_config_key(repo, default_config_raw):
    from cosmoforge.core.config import check_inputs

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
    from tests.helpers import snakemake, workdir

    work = workdir(tmp_path / "work")
    old = work / "results" / "default" / "seeds" / "wikihow.parquet"  # a previous run's seeds
    old.parent.mkdir(parents=True)
    pq.write_table(pa.table({"seed_id": ["wikihow:1"]}), old)
    overlay = tmp_path / "typo.yaml"
    overlay.write_text(
        "splits:\n  wikihow:\n    sources:\n      - {name: wikihow, kind: wikihow, format: jsonl,"
        " path: resources/seeds/wikihow_titels.jsonl}\n"
    )
    proc = snakemake(work, "-n", "--configfile", "config/config.yaml", str(overlay))
    assert proc.returncode != 0
    assert (
        "config: splits.wikihow.sources[0].path: no such file "
        "resources/seeds/wikihow_titels.jsonl" in proc.stdout + proc.stderr
    )
    assert old.is_file()  # left as it was, and not taken for current


# --- one resolution for Snakemake and every command -----------------------------------------


def test_no_file_means_the_embedded_default_and_a_file_given_never_inherits_it(repo, tmp_path):
    from cosmoforge.core.config import resolve_config

    demo = resolve_config([], None, repo)
    assert demo["splits"]["stanford"]["max_seeds"] == 3 and demo["sampling"]["max_tokens"] == 192
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "splits:\n  wikihow:\n    sources:\n      - {name: w, kind: wikihow, format: jsonl,"
        " path: my/titles.jsonl}\nmodel: {name: m, path: models/m}\n"
    )
    config = resolve_config([mine], None, repo)
    assert list(config["splits"]) == ["wikihow"]  # no demo split merged in
    assert config["splits"]["wikihow"]["max_seeds"] == "all"
    assert config["sampling"]["max_tokens"] == 2500 and config["release"]["min_token_length"] == 150
    assert config["topics"]["kmeans"]["k"] == 145
    assert config["engine"]["env"] == {} and config["engine"]["extra_args"] == {}


def test_files_merge_in_order_then_config_entries(repo, tmp_path):
    from cosmoforge.core.config import resolve_config

    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("sampling: {max_tokens: 300, top_k: 10}\nsplits: {wikihow: {shards: 3}}\n")
    second.write_text("sampling: {max_tokens: 400}\n")
    config = resolve_config(
        [repo / "config" / "config.yaml", first, second], {"run_name": "x"}, repo
    )
    assert config["sampling"]["max_tokens"] == 400 and config["sampling"]["top_k"] == 10
    assert config["splits"]["wikihow"]["shards"] == 3
    assert config["splits"]["wikihow"]["sources"]  # merged key by key with the demo's split
    assert config["run_name"] == "x"


@pytest.mark.parametrize(
    "entries",
    [
        ["run_name=try2", "seed=7", "ratio=0.25", "flag=True", "off=False", "empty="],
        ["engine={backend: fake, tensor_parallel_size: 2}", "splits={wikihow: {shards: 3}}"],
        ["seed=nan", "name=with spaces", "list=[1, 2]", "quoted='a'"],
    ],
)
def test_config_entries_are_read_as_snakemake_reads_them(entries):
    from snakemake.cli import parse_config

    from cosmoforge.core.config import parse_config_args

    ours, theirs = parse_config_args(entries), parse_config(entries)
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)


@pytest.mark.parametrize("entry", ["x=1", "1st=2", "novalue"])
def test_config_entries_snakemake_refuses_are_refused(entry):
    from snakemake.cli import parse_config

    from cosmoforge.core.config import parse_config_args

    with pytest.raises(ValueError):
        parse_config([entry])
    with pytest.raises(ConfigError, match=f"--config {entry}: "):
        parse_config_args([entry])


def test_a_key_given_twice_in_a_file_is_refused_with_its_line(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("sampling:\n  max_tokens: 100\n  top_p: 0.9\n  max_tokens: 200\n")
    with pytest.raises(
        ConfigError, match=r"twice.yaml: line 4, column 3: .*'max_tokens' is given twice"
    ):
        load_config(path)


@pytest.mark.parametrize(
    "text, key",
    [
        ("decontamination: {threshold: .nan}", "decontamination.threshold"),
        ("sampling: {temperature: .inf}", "sampling.temperature"),
        ("slurm: {tokens_per_s_per_gpu: -.inf}", "slurm.tokens_per_s_per_gpu"),
    ],
)
def test_numbers_must_be_finite(repo, tmp_path, text, key):
    from cosmoforge.core.config import check_setting, resolve_config

    path = tmp_path / "overlay.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=f"{key}: must be a finite number"):
        resolve_config([repo / "config" / "config.yaml", path], None, repo)
    with pytest.raises(ConfigError, match="must be a finite number"):
        check_setting("decontamination.threshold", float("nan"))


def test_config_command_prints_what_snakemake_would_resolve(repo, capsys):
    from cosmoforge.cli import main

    preset = str(repo / "config" / "presets" / "cosmopedia.yaml")
    assert main(["config", "--configfile", preset, "--config", "run_name=mine"]) == 0
    printed = capsys.readouterr().out
    resolved = yaml.safe_load(printed)
    assert resolved["run_name"] == "mine" and resolved["splits"]["stanford"]["max_seeds"] == "all"
    assert "VLLM_CPU" not in printed and printed.startswith("# resolved from")
    # check and plan take the same arguments (and the old --config FILE form).
    assert (
        main(
            ["check", "--configfile", str(repo / "config" / "config.yaml"), "--base-dir", str(repo)]
        )
        == 0
    )
    assert (
        main(["plan", "--config", str(repo / "config" / "config.yaml"), "--base-dir", str(repo)])
        == 0
    )


def test_a_splits_sampling_has_the_rules_of_the_global_one(default_config_raw):
    config = copy.deepcopy(default_config_raw)
    config["splits"]["wikihow"]["sampling"] = {"temprature": 0.9, "max_tokens": -5}
    with pytest.raises(ConfigError) as err:
        validate_config(config, source="my.yaml")
    message = str(err.value)
    assert "my.yaml: splits.wikihow.sampling: Additional properties are not allowed" in message
    minimum = "my.yaml: splits.wikihow.sampling.max_tokens: -5 is less than the minimum of 1"
    assert minimum in message
    config["splits"]["wikihow"]["sampling"] = {"max_tokens": 64}
    resolved = validate_config(config)
    assert resolved["splits"]["wikihow"]["sampling"] == {"max_tokens": 64}  # no defaults added


def test_files_of_another_shard_count_are_named_before_a_run(repo, tmp_path):
    from cosmoforge.core.layout import stale_shard_files

    config = load_config(repo / "config" / "config.yaml")
    release = tmp_path / "results" / "default" / "release" / "wikihow"
    release.mkdir(parents=True)
    (release / "train-00000-of-00001.parquet").write_bytes(b"x")
    assert stale_shard_files(config, tmp_path) == []  # the current count: nothing stale
    config["splits"]["wikihow"]["shards"] = 2
    generated = tmp_path / "results" / "default" / "generated" / "wikihow"
    generated.mkdir(parents=True)
    (generated / "00001.parquet").write_bytes(b"x")  # index 1 exists with 2 shards: current
    (generated / "00002.stats.json").write_bytes(b"x")  # index 2 does not
    [line] = stale_shard_files(config, tmp_path)
    assert line.startswith(
        "config: splits.wikihow.shards: results/default/release/wikihow/"
        "train-00000-of-00001.parquet (and 1 more) belong to another shard count than 2"
    )
    assert line.endswith(
        "remove results/default/generated/wikihow results/default/release/wikihow "
        "to make the split again"
    )


@pytest.mark.dryrun
def test_a_changed_shard_count_stops_the_run_before_it_mixes_releases(repo, tmp_path):
    from tests.helpers import snakemake, workdir

    work = workdir(tmp_path)
    old = work / "results" / "default" / "release" / "wikihow" / "train-00000-of-00001.parquet"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"PAR1")
    (work / "two.yaml").write_text("splits: {wikihow: {shards: 2}}\n")
    proc = snakemake(work, "-n", "--configfile", "config/config.yaml", "two.yaml")
    assert proc.returncode != 0
    assert (
        "config: splits.wikihow.shards: results/default/release/wikihow/"
        in proc.stdout + proc.stderr
    )
    assert old.exists()  # nothing removed behind the user's back


@pytest.mark.dryrun
@pytest.mark.parametrize("name", ["..", ".", "a/b", "/tmp/x", "my run"])
def test_a_run_name_that_is_not_one_folder_stops_snakemake(repo, tmp_path, name):
    from tests.helpers import snakemake, workdir

    work = workdir(tmp_path)
    proc = snakemake(work, "-n", "--config", f"run_name={name}")
    assert proc.returncode != 0
    assert f"run_name: {name!r} must be one folder name" in proc.stdout + proc.stderr
    assert not (work / "results").exists()
