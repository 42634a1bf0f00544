"""The real thing: SmolLM2 through vLLM's CPU build, driven by Snakemake and by the CLI.

The default tier (`make test`, CI) runs one split of the embedded default through the model: one
engine start, the release, ledger and card, a rerun with nothing to do. The long tier (`make
test-all`) runs all eight splits, topic labelling included, and the kill/resume loops. They need
vllm and the converted model; a developer can leave them out with COSMOFORGE_SKIP_VLLM=1
(reported as skips).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cosmoforge import SPLITS
from cosmoforge.core.config import load_config
from cosmoforge.core.layout import Layout
from cosmoforge.stages.release import FLAG_COLUMNS, PROVENANCE_COLUMNS, RELEASE_COLUMNS
from tests.helpers import accounted_rows, e2e_workdir, one_split_config, released_split

pytestmark = pytest.mark.vllm
RUN = "pytest-e2e"
ONE_SPLIT = "stories"  # no topic clustering: one engine start
ONE_SPLIT_RUN = "pytest-e2e-stories"


def snakemake(repo, *args, timeout=3600, workdir=None):
    """Snakemake with the local profile, in `workdir` (a temporary working folder made by
    `e2e_workdir`) or in the checkout."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    where = ["-s", str(repo / "Snakefile"), "--directory", str(workdir)] if workdir else []
    return subprocess.run(
        [str(bin_dir / "snakemake"), "--workflow-profile", "profiles/local", "--cores", "2"]
        + where
        + list(args),
        cwd=workdir or repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def e2e_work(repo, tmp_path_factory):
    return e2e_workdir(repo, tmp_path_factory.mktemp("e2e"))


def run_once(repo, work, run_name, *args):
    started = time.time()
    proc = snakemake(repo, *args, workdir=work)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    in_checkout = repo / "results" / run_name  # nothing of the run lands in the checkout
    assert not in_checkout.exists() or in_checkout.stat().st_mtime < started
    return work / "results" / run_name, time.time() - started


@pytest.fixture(scope="module")
def e2e_run(repo, e2e_work):
    """The embedded default as `make run` runs it: all eight splits (the long tier)."""
    return run_once(repo, e2e_work, RUN, "--config", f"run_name={RUN}")


@pytest.fixture(scope="module")
def one_split_work(repo, tmp_path_factory):
    work = e2e_workdir(repo, tmp_path_factory.mktemp("e2e-one"))
    one_split_config(work / "one-split.yaml", ONE_SPLIT, ONE_SPLIT_RUN, max_tokens=96)
    return work


@pytest.fixture(scope="module")
def one_split_run(repo, one_split_work):
    """One split of the embedded default through the model, as a user's own config file."""
    return run_once(repo, one_split_work, ONE_SPLIT_RUN, "--configfile", "one-split.yaml")


def test_one_split_through_the_model_is_released_counted_and_carded(one_split_run, one_split_work):
    results, seconds = one_split_run
    print(f"one-split run: {seconds:.0f} s")
    config = load_config(one_split_work / "one-split.yaml")
    check_release(results, config)


@pytest.mark.long
def test_default_run_releases_all_eight_splits(e2e_run, repo):
    results, seconds = e2e_run
    print(f"default run: {seconds:.0f} s")
    config = {**load_config(repo / "config" / "config.yaml"), "run_name": RUN}
    assert set(config["splits"]) == set(SPLITS)
    card = check_release(results, config)
    check_topics(results, card)


def check_release(results, config) -> str:
    """The release of a finished run: one file per shard, every prompt accounted for, the card
    and the ledger agree. Returns the card's text."""
    release = results / "release"
    total = 0
    layout = Layout(config)
    for split in config["splits"]:
        # One file per generation shard, in the hub's layout.
        names = sorted(p.name for p in (release / split).iterdir())
        shards = config["splits"][split]["shards"]
        assert names == [f"train-{k:05d}-of-{shards:05d}.parquet" for k in range(shards)]
        assert names == [Path(layout.release_file(split, s)).name for s in layout.shards(split)]
        table = released_split(results, split)
        assert table.num_rows > 0, split
        assert table.column_names == RELEASE_COLUMNS + PROVENANCE_COLUMNS + FLAG_COLUMNS
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
    assert "configs:" in card and all(f"config_name: {s}" in card for s in config["splits"])
    assert all(
        (release / "plots" / f"{p}.png").stat().st_size > 1000
        for p in ("format", "audience", "seed_data", "token_length")
    )
    assert not list(results.rglob("*.parts")) and not list(results.rglob(".*.tmp"))
    for name in ("dedup/report.json", "dedup/removed.parquet", "decont/contamination.csv"):
        assert (results / name).is_file(), name
    assert "## Deduplication" in card and "## Decontamination" in card
    assert "## Quality flags" in card and "## Diversity" in card
    check_ledger(results, stats, config["run_name"])
    return card


def check_ledger(results, stats, run_name):
    """Every prompt of the run is in the ledger exactly once; its fates agree with the release;
    `cosmoforge explain` shows one."""
    ledger = pq.read_table(results / "ledger.parquet")
    prompt_ids = (
        pq.read_table(sorted((results / "prompts").glob("*/*.parquet")), columns=["sample_id"])
        .column("sample_id")
        .to_pylist()
    )
    ids = ledger.column("sample_id").to_pylist()
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(prompt_ids)
    released = [r for r in ledger.to_pylist() if r["fate"] == "released"]
    assert len(released) == stats["rows"]
    for split, fates in stats["fates"].items():
        assert fates.get("released", 0) == stats["splits"][split]["rows"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cosmoforge",
            "explain",
            released[0]["sample_id"],
            "--run-name",
            run_name,
        ],
        cwd=results.parent.parent,  # the run's working folder: results/<run> is relative to it
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"sample {released[0]['sample_id']}: released")
    assert "prompt:" in proc.stdout and "text:" in proc.stdout


def check_topics(results, card):
    """Web prompts carry the topic of their cluster; the topic stages' outputs are in the card."""
    from cosmoforge.stages.topics import load_decisions

    decisions = {e["id"]: e for e in load_decisions(results / "topics" / "decisions.yaml", 5)}
    report = json.loads((results / "topics" / "report" / "report.json").read_text())
    assert sum(sum(c.values()) for c in report["seeds_per_split"].values()) == 20
    assert [c["id"] for c in report["clusters"]] == [0, 1, 2, 3, 4]
    # Clusters without a label are dropped with their reason; no label is made up.
    labels = pq.read_table(results / "topics" / "labels.parquet").to_pylist()
    for label in labels:
        entry = decisions[label["cluster"]]
        if label["error"]:
            assert entry["decision"] == "drop" and label["topic"] is None
        else:
            assert entry["topic"] == label["topic"] and 1 <= label["score"] <= 10
    assert any(entry["decision"] == "keep" for entry in decisions.values())
    for split in ("web_samples_v1", "web_samples_v2"):
        table = pq.read_table(sorted((results / "prompts" / split).glob("*.parquet"))).to_pylist()
        for row in table:
            entry = decisions[row["topic_cluster"]]
            assert entry["decision"] == "keep" and row["topic"] == entry["topic"]
            assert entry["route"] == "all" or row["format"] == entry["route"]
    assert "## Topics of the web seeds" in card
    for plot in ("topic_map", "topic_distribution", "score_histogram"):
        assert (results / "release" / "plots" / f"{plot}.png").stat().st_size > 1000


def test_release_loads_with_datasets(one_split_run):
    import datasets

    results, _ = one_split_run
    loaded = datasets.load_dataset("parquet", data_dir=str(results / "release" / ONE_SPLIT))
    table = released_split(results, ONE_SPLIT)
    assert loaded["train"].num_rows == table.num_rows > 0
    assert loaded["train"].column_names[:6] == RELEASE_COLUMNS


def test_rerun_after_success_has_nothing_to_do(one_split_run, one_split_work, repo):
    proc = snakemake(repo, "-n", "--configfile", "one-split.yaml", workdir=one_split_work)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_deleted_intermediates_status_and_snakemake_agree(one_split_run, one_split_work, repo):
    """A generated shard and a prompt shard deleted after the run: Snakemake does not rebuild
    them (their products exist), and status counts the shard done, as Snakemake sees it."""
    layout = Layout(load_config(one_split_work / "one-split.yaml"))
    shard = layout.shards(ONE_SPLIT)[0]
    deleted = [
        one_split_work / layout.generated(ONE_SPLIT, shard),
        one_split_work / layout.prompt_shard(ONE_SPLIT, shard),
    ]
    for path in deleted:
        path.rename(path.with_name(path.name + ".aside"))
    try:
        proc = snakemake(repo, "-n", "--configfile", "one-split.yaml", workdir=one_split_work)
        assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
        status = subprocess.run(
            [str(Path(sys.executable).parent / "cosmoforge"), "status", "--json"]
            + ["--configfile", "one-split.yaml"],
            cwd=one_split_work,
            capture_output=True,
            text=True,
            check=True,
        )
        split = json.loads(status.stdout)["splits"][ONE_SPLIT]
        assert split["done"] == split["shards"] and split["pending"] == 0
    finally:
        for path in deleted:
            path.with_name(path.name + ".aside").rename(path)


def kill_test_shard(repo, tmp_path, model_path, splits, seed, flush_every, max_tokens):
    """Prompts of the bundled seeds of `splits` as one shard, and the `cosmoforge generate`
    command for it with an engine that runs 4 sequences at a time."""
    from cosmoforge.core.tables import write_prompt_shard
    from cosmoforge.stages.prompts import build_prompt_rows
    from cosmoforge.stages.seeds import read_split_seeds
    from cosmoforge.stages.templates import load_templates

    config = load_config(repo / "config" / "config.yaml")
    rows = []
    for split in splits:
        sources = [{**s, "path": str(repo / s["path"])} for s in config["splits"][split]["sources"]]
        seeds, _ = read_split_seeds(split, sources)
        templates = load_templates(repo / "prompts", split)
        rows += build_prompt_rows(split, seeds, templates, seed=seed, shards=1)
    prompts = tmp_path / "prompts.parquet"
    write_prompt_shard(rows, prompts)
    settings = {
        "seed": seed,
        "model": {**config["model"], "path": str(model_path)},
        "engine": {**config["engine"], "flush_every": flush_every, "max_num_seqs": 4},
        "sampling": {**config["sampling"], "max_tokens": max_tokens},
    }
    cmd = [
        str(Path(sys.executable).parent / "cosmoforge"),
        "generate",
        "--prompts",
        str(prompts),
        "--out",
        str(tmp_path / "00000.parquet"),
        "--stats",
        str(tmp_path / "stats.json"),
        "--settings",
        json.dumps(settings),
    ]
    return rows, cmd


@pytest.fixture(scope="module")
def converted_model(repo):
    """The HF folder of the default model, made by the workflow's own rule if missing."""
    path = load_config(repo / "config" / "config.yaml")["model"]["path"]
    proc = snakemake(repo, path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return repo / path


@pytest.mark.long
def test_killed_generation_resumes_without_loss_or_duplicates(repo, tmp_path, converted_model):
    """SIGKILL a real generation job mid-shard, rerun it, get every prompt exactly once."""
    # A real shard holds far more prompts than the engine runs at once, so rows finish over
    # time; max_num_seqs=4 reproduces that with 29 prompts.
    rows, cmd = kill_test_shard(
        repo, tmp_path, converted_model, ["stories"], seed=1, flush_every=2, max_tokens=96
    )
    out = tmp_path / "00000.parquet"
    parts = tmp_path / "00000.parquet.parts"
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


@pytest.mark.long
def test_repeated_sigkills_still_give_every_row_exactly_once(repo, tmp_path, converted_model):
    """SIGKILL generation 5 times at random moments (start-up included), then finish."""
    import random

    rows, cmd = kill_test_shard(
        repo,
        tmp_path,
        converted_model,
        ["stories", "web_samples_v2"],
        seed=3,
        flush_every=1,
        max_tokens=96,
    )
    out = tmp_path / "00000.parquet"
    parts = tmp_path / "00000.parquet.parts"
    rng = random.Random(20261127)

    def flushed_rows():
        return sum(pq.read_table(p).num_rows for p in parts.glob("part-*.parquet"))

    flushed_after_kill = []
    # Kill moments: some during start-up, the others a random moment after this attempt has
    # flushed new rows (mid-generation), so both kinds always happen whatever the machine speed.
    phases = ["start-up", "generating", "generating", "start-up", "generating"]
    rng.shuffle(phases)
    for attempt, phase in enumerate(phases):
        before = flushed_rows()
        with open(tmp_path / f"run{attempt}.log", "w") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        if phase == "start-up":
            time.sleep(rng.uniform(1, 8))
        else:
            deadline = time.time() + 300
            while flushed_rows() == before and time.time() < deadline:
                assert proc.poll() is None, (tmp_path / f"run{attempt}.log").read_text()[-2000:]
                time.sleep(0.2)
            time.sleep(rng.uniform(0, 3))
        assert proc.poll() is None, f"attempt {attempt} finished before its kill"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not out.exists()
        flushed_after_kill.append(flushed_rows())
    assert flushed_after_kill == sorted(flushed_after_kill)  # progress is never lost
    assert 0 < flushed_after_kill[-1] < len(rows)
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stderr[-3000:]
    ids = pq.read_table(out).column("sample_id").to_pylist()
    assert ids == [r["sample_id"] for r in rows]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["resumed_rows"] == flushed_after_kill[-1]
    print(f"rows flushed after each kill: {flushed_after_kill} of {len(rows)}")
