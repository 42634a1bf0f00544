import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.reports.ledger import shard_fates


def write(path, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture
def shard(tmp_path):
    """Six generated rows: 1 near-duplicate, 1 contaminated, 2 left out, 2 released."""
    ids = [f"s{i}" for i in range(6)]
    return {
        "generated": write(
            tmp_path / "generated" / "00003.parquet",
            {"sample_id": ids, "split": ["stories"] * 6, "template_id": ["stories/a"] * 6},
        ),
        "removed": write(
            tmp_path / "removed.parquet",
            {"sample_id": ["s1"], "minhash_cluster_id": pa.array([7], pa.int64())},
        ),
        "contaminated": write(
            tmp_path / "contaminated.parquet",
            {
                "sample_id": ["s2"],
                "benchmark_matches": [json.dumps([{"benchmark": "mmlu", "item_id": "mmlu:9"}])],
            },
        ),
        "left_out": write(
            tmp_path / "left_out.parquet",
            {"sample_id": ["s3", "s4"], "reason": ["engine_error", "too_short"]},
        ),
        "release": write(tmp_path / "release.parquet", {"sample_id": ["s0", "s5"]}),
    }


def test_every_generated_row_gets_exactly_one_fate(shard):
    table = shard_fates(shard, stayed={"7": "s0"})
    rows = {r["sample_id"]: (r["fate"], r["detail"]) for r in table.to_pylist()}
    assert rows == {
        "s0": ("released", None),
        "s1": ("near_duplicate", "s0"),
        "s2": ("contaminated", "mmlu:9"),
        "s3": ("dropped:engine_error", None),
        "s4": ("dropped:too_short", None),
        "s5": ("released", None),
    }
    assert set(table.column("shard").to_pylist()) == {"00003"}


def test_outputs_of_different_runs_are_caught(shard):
    write(shard["release"], {"sample_id": ["s0", "s5", "s4"]})  # s4 also left out
    with pytest.raises(
        CosmoforgeError, match="sample 's4' already has the fate 'dropped:too_short'"
    ):
        shard_fates(shard, stayed={})
    write(shard["release"], {"sample_id": ["s0"]})  # s5 has no fate
    with pytest.raises(CosmoforgeError, match=r"1 generated row\(s\) without a fate"):
        shard_fates(shard, stayed={})


def test_the_ledger_command_needs_only_the_run_name_and_shard_counts(
    shard, tmp_path, capsys, monkeypatch
):
    """The ledger job is handed where the files are (run name, shards per split), not the whole
    config: so a Slurm partition or a sampling change does not rerun it."""
    from cosmoforge.cli import main
    from cosmoforge.core.layout import RunPaths
    from cosmoforge.reports.ledger import shard_files

    paths = RunPaths("r", {"stories": 2})
    monkeypatch.chdir(tmp_path)
    for name, path in shard_files(paths, "stories", "00001").items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(shard[name].read_bytes())
    for name, path in shard_files(paths, "stories", "00000").items():  # a shard of no rows
        pq.write_table(pq.read_schema(shard[name]).empty_table(), path)
    for shard_id, stayed in (("00000", {}), ("00001", {"7": "s0"})):
        Path(paths.dedup_stayed("stories", shard_id)).parent.mkdir(parents=True, exist_ok=True)
        Path(paths.dedup_stayed("stories", shard_id)).write_text(json.dumps(stayed))
    argv = ["ledger", "--settings", json.dumps(paths.settings())]
    assert main([*argv, "--out", "ledger.parquet"]) == 0
    assert json.loads(capsys.readouterr().out)["stories"] == {
        "contaminated": 1,
        "dropped:engine_error": 1,
        "dropped:too_short": 1,
        "near_duplicate": 1,
        "released": 2,
    }
    assert pq.read_table(tmp_path / "ledger.parquet").num_rows == 6


def test_explain_prints_prompt_text_provenance_and_fate(default_config, tmp_path):
    from cosmoforge.core.layout import Layout
    from cosmoforge.reports.ledger import LEDGER_SCHEMA, explain
    from tests.helpers import generated_rows

    layout = Layout(default_config)
    generated = tmp_path / layout.generated("wikihow", "00000")
    generated.parent.mkdir(parents=True)
    pq.write_table(generated_rows(["First text.", "Second text."]), generated)
    ledger = pa.table(
        {
            "sample_id": ["id0", "id1"],
            "split": ["wikihow"] * 2,
            "shard": ["00000"] * 2,
            "template_id": ["wikihow/wikihow_article"] * 2,
            "fate": ["released", "near_duplicate"],
            "detail": [None, "id0"],
        },
        schema=LEDGER_SCHEMA,
    )
    pq.write_table(ledger, tmp_path / layout.results / "ledger.parquet")
    text = explain(default_config, "id1", tmp_path)
    assert text.startswith("sample id1: near_duplicate (id0)")
    assert "  model_revision: rev" in text and "prompt:\nTitle: 1" in text
    assert text.endswith("text:\nSecond text.")
    with pytest.raises(CosmoforgeError, match="no sample 'nope' in this run"):
        explain(default_config, "nope", tmp_path)
