"""The real thing: SmolLM2 through vLLM's CPU build, driven by Snakemake and by the CLI.

These tests are slow (minutes) and are part of `make test` and CI. They need vllm and the
converted model; a developer can leave them out with COSMOFORGE_SKIP_VLLM=1 (reported as skips).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cosmoforge import SPLITS
from cosmoforge.config import load_config
from cosmoforge.release import PROVENANCE_COLUMNS, RELEASE_COLUMNS

pytestmark = pytest.mark.vllm
RUN = "pytest-e2e"


def snakemake(repo, *args, timeout=3600):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(bin_dir / "snakemake"), "--workflow-profile", "profiles/local", "--cores", "2", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def e2e_run(repo):
    shutil.rmtree(repo / "results" / RUN, ignore_errors=True)
    shutil.rmtree(repo / "logs" / RUN, ignore_errors=True)
    started = time.time()
    proc = snakemake(repo, "--config", f"run_name={RUN}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return repo / "results" / RUN, time.time() - started


def test_default_run_releases_all_eight_splits(e2e_run, repo):
    results, seconds = e2e_run
    print(f"default run: {seconds:.0f} s")
    release = results / "release"
    config = load_config(repo / "config" / "config.yaml")
    total = 0
    for split in SPLITS:
        table = pq.read_table(release / split / "train-00000-of-00001.parquet")
        assert table.num_rows > 0, split
        assert table.column_names == RELEASE_COLUMNS + PROVENANCE_COLUMNS
        rows = table.to_pylist()
        assert len({r["sample_id"] for r in rows}) == len(rows)
        assert all(r["token_length"] >= config["release"]["min_token_length"] for r in rows)
        assert all(r["text"].strip() and r["model"] == config["model"]["name"] for r in rows)
        assert {r["model_revision"] for r in rows} == {"gguf-sha256:b179c9523d0e"}
        # Every prompt has exactly one generated row, and every row is either released or
        # counted: removed by dedup, by decontamination, or by the length filter.
        assert accounted_rows(results, split) == table.num_rows
        total += table.num_rows
    stats = json.loads((release / "stats.json").read_text())
    assert stats["rows"] == total
    card = (release / "README.md").read_text()
    assert "configs:" in card and all(f"config_name: {s}" in card for s in SPLITS)
    assert all(
        (release / "plots" / f"{p}.png").stat().st_size > 1000
        for p in ("format", "audience", "seed_data", "token_length")
    )
    assert not list(results.rglob("*.parts")) and not list(results.rglob(".*.tmp"))
    for name in ("dedup/report.json", "dedup/removed.parquet", "decont/contamination.csv"):
        assert (results / name).is_file(), name
    assert "## Deduplication" in card and "## Decontamination" in card


def accounted_rows(results, split):
    """Released rows of a split, after checking that every prompt is accounted for."""
    prompts = json.loads((results / "prompts" / f"{split}.report.json").read_text())
    dedup = json.loads((results / "dedup" / "report.json").read_text())["per_split"][split]
    contaminated = sum(
        pq.read_table(p).num_rows for p in (results / "decont" / "contaminated" / split).glob("*")
    )
    report = json.loads((results / "collected" / f"{split}.filter.json").read_text())
    assert dedup["documents"] == prompts["prompts"]
    assert report["generated"] == prompts["prompts"] - dedup["removed"] - contaminated
    assert report["kept"] + sum(report["left_out"].values()) == report["generated"]
    return report["kept"]


def test_release_loads_with_datasets(e2e_run):
    import datasets

    results, _ = e2e_run
    for split in SPLITS:
        loaded = datasets.load_dataset("parquet", data_dir=str(results / "release" / split))
        table = pq.read_table(results / "release" / split / "train-00000-of-00001.parquet")
        assert loaded["train"].num_rows == table.num_rows
        assert loaded["train"].column_names[:6] == RELEASE_COLUMNS


def test_rerun_after_success_has_nothing_to_do(e2e_run, repo):
    proc = snakemake(repo, "-n", "--config", f"run_name={RUN}")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def converted_model(repo):
    """The HF folder of the default model, made by the workflow's own rule if missing."""
    path = load_config(repo / "config" / "config.yaml")["model"]["path"]
    proc = snakemake(repo, path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return repo / path


def test_killed_generation_resumes_without_loss_or_duplicates(repo, tmp_path, converted_model):
    """SIGKILL a real generation job mid-shard, rerun it, get every prompt exactly once."""
    from cosmoforge.prompts import build_prompt_rows, write_prompts
    from cosmoforge.seeds import read_split_seeds
    from cosmoforge.templates import load_templates

    config = load_config(repo / "config" / "config.yaml")
    split = "stories"
    sources = [{**s, "path": str(repo / s["path"])} for s in config["splits"][split]["sources"]]
    seeds, _ = read_split_seeds(split, sources)
    rows = build_prompt_rows(
        split, seeds, load_templates(repo / "prompts", split), seed=1, shards=1
    )
    prompts = tmp_path / "prompts.parquet"
    write_prompts(rows, 1, prompts)
    settings = {
        "seed": 1,
        "model": {**config["model"], "path": str(converted_model)},
        # A real shard holds far more prompts than the engine runs at once, so rows finish
        # over time; max_num_seqs=4 reproduces that with 29 prompts.
        "engine": {**config["engine"], "flush_every": 2, "max_num_seqs": 4},
        "sampling": {**config["sampling"], "max_tokens": 96},
    }
    out = tmp_path / "00000.parquet"
    parts = tmp_path / "00000.parquet.parts"
    cmd = [
        str(Path(sys.executable).parent / "cosmoforge"),
        "generate",
        "--prompts",
        str(prompts),
        "--shard",
        "0",
        "--out",
        str(out),
        "--stats",
        str(tmp_path / "stats.json"),
        "--settings",
        json.dumps(settings),
    ]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 2:
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    flushed = sum(pq.read_table(p).num_rows for p in parts.glob("part-*.parquet"))
    assert 2 <= flushed < len(rows), "the kill must land mid-shard"
    assert not out.exists()

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    table = pq.read_table(out)
    ids = table.column("sample_id").to_pylist()
    assert ids == [r["sample_id"] for r in rows]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["resumed_rows"] == flushed and stats["generated_rows"] == len(rows) - flushed
    assert not parts.exists()


def test_repeated_sigkills_still_give_every_row_exactly_once(repo, tmp_path, converted_model):
    """SIGKILL generation 5 times at random moments (start-up included), then finish."""
    import random

    from cosmoforge.prompts import build_prompt_rows, write_prompts
    from cosmoforge.seeds import read_split_seeds
    from cosmoforge.templates import load_templates

    config = load_config(repo / "config" / "config.yaml")
    rows = []
    for split in ("stories", "web_samples_v2"):
        sources = [{**s, "path": str(repo / s["path"])} for s in config["splits"][split]["sources"]]
        seeds, _ = read_split_seeds(split, sources)
        rows += build_prompt_rows(
            split, seeds, load_templates(repo / "prompts", split), seed=3, shards=1
        )
    prompts = tmp_path / "prompts.parquet"
    write_prompts(rows, 1, prompts)
    settings = {
        "seed": 3,
        "model": {**config["model"], "path": str(converted_model)},
        "engine": {**config["engine"], "flush_every": 3, "max_num_seqs": 4},
        "sampling": {**config["sampling"], "max_tokens": 128},
    }
    out = tmp_path / "00000.parquet"
    parts = tmp_path / "00000.parquet.parts"
    cmd = [
        str(Path(sys.executable).parent / "cosmoforge"),
        "generate",
        "--prompts",
        str(prompts),
        "--shard",
        "0",
        "--out",
        str(out),
        "--stats",
        str(tmp_path / "stats.json"),
        "--settings",
        json.dumps(settings),
    ]
    rng = random.Random(20261127)
    flushed_after_kill = []
    for attempt in range(5):
        with open(tmp_path / f"run{attempt}.log", "w") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        time.sleep(rng.uniform(3, 22))  # engine start-up is ~12-18 s: some kills land in it
        assert proc.poll() is None, f"attempt {attempt} finished before its kill"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not out.exists()
        flushed_after_kill.append(
            sum(pq.read_table(p).num_rows for p in parts.glob("part-*.parquet"))
        )
    assert flushed_after_kill == sorted(flushed_after_kill)  # progress is never lost
    assert 0 < flushed_after_kill[-1] < len(rows)
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stderr[-3000:]
    ids = pq.read_table(out).column("sample_id").to_pylist()
    assert ids == [r["sample_id"] for r in rows]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["resumed_rows"] == flushed_after_kill[-1]
    print(f"rows flushed after each kill: {flushed_after_kill} of {len(rows)}")
