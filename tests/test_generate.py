import pyarrow.parquet as pq
import pytest

from cosmoforge.engines import FakeEngine, cpu_bind_all, drop_duplicate_bos
from cosmoforge.generate import generate_shard, parts_dir
from cosmoforge.prompts import build_prompt_rows, write_prompt_shard
from cosmoforge.seeds import read_split_seeds
from cosmoforge.templates import load_templates

SETTINGS = {
    "seed": 5,
    "model": {"name": "fake/model", "path": "nowhere", "revision": "r1"},
    "engine": {"backend": "fake", "flush_every": 4},
    "sampling": {
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 50,
        "repetition_penalty": 1.2,
        "max_tokens": 60,
    },
}


@pytest.fixture
def prompt_file(repo, default_config, tmp_path):
    split = "stories"
    seeds, _ = read_split_seeds(split, default_config["splits"][split]["sources"])
    rows = build_prompt_rows(
        split, seeds, load_templates(repo / "prompts", split), seed=5, shards=2
    )
    shard = [r for r in rows if r["shard"] == 0]
    path = tmp_path / "prompts.parquet"
    write_prompt_shard(shard, path)
    return path, shard


class Crash(RuntimeError):
    pass


class CrashingEngine(FakeEngine):
    """Dies (like a killed job) after yielding `limit` completions."""

    calls: list[int] = []

    def __init__(self, model, engine, sampling, limit):
        super().__init__(model, engine, sampling)
        self.limit = limit

    def run(self, requests):
        requests = list(requests)
        CrashingEngine.calls.append(len(requests))
        for i, completion in enumerate(super().run(requests)):
            if i == self.limit:
                raise Crash("killed")
            yield completion


def factory(limit):
    return lambda model, engine, sampling: CrashingEngine(model, engine, sampling, limit)


def test_crash_mid_shard_then_rerun_gives_every_row_once(prompt_file, tmp_path):
    prompts_path, shard_rows = prompt_file
    out = tmp_path / "gen" / "00000.parquet"
    CrashingEngine.calls = []
    with pytest.raises(Crash):
        generate_shard(prompts_path, out, SETTINGS, tmp_path / "s.json", factory(limit=10))
    # Nothing looks complete; the 10 finished rows are kept (two full micro-batches of 4 and
    # the partial one, flushed on the way out).
    assert not out.exists() and not (tmp_path / "s.json").exists()
    assert len(list(parts_dir(out).glob("part-*.parquet"))) == 3
    with pytest.raises(Crash):  # a second crash, further along
        generate_shard(prompts_path, out, SETTINGS, tmp_path / "s.json", factory(limit=5))
    stats = generate_shard(prompts_path, out, SETTINGS, tmp_path / "s.json", factory(limit=10**6))
    n = len(shard_rows)
    # Each rerun sent only what was not flushed yet.
    assert CrashingEngine.calls == [n, n - 10, n - 15]
    table = pq.read_table(out)
    ids = table.column("sample_id").to_pylist()
    assert ids == [r["sample_id"] for r in shard_rows]  # prompt order, exactly once
    assert stats["resumed_rows"] == 15 and stats["rows"] == n
    assert not parts_dir(out).exists()


def test_resumed_rows_equal_uninterrupted_rows(prompt_file, tmp_path):
    prompts_path, _ = prompt_file
    clean = tmp_path / "clean.parquet"
    generate_shard(prompts_path, clean, SETTINGS, tmp_path / "a.json")
    resumed = tmp_path / "resumed.parquet"
    with pytest.raises(Crash):
        generate_shard(prompts_path, resumed, SETTINGS, tmp_path / "b.json", factory(limit=6))
    generate_shard(prompts_path, resumed, SETTINGS, tmp_path / "b.json")
    # Per-request seeds come from the sample id, so the resumed shard equals the clean one.
    assert pq.read_table(clean).equals(pq.read_table(resumed))


def test_rows_carry_provenance(prompt_file, tmp_path):
    prompts_path, shard_rows = prompt_file
    out = tmp_path / "g.parquet"
    generate_shard(prompts_path, out, SETTINGS, tmp_path / "s.json")
    row = pq.read_table(out).to_pylist()[0]
    assert row["model"] == "fake/model" and row["model_revision"] == "r1"
    assert row["engine"] == "fake" and '"max_tokens": 60' in row["sampling"]
    assert row["finish_reason"] in {"stop", "length"} and row["completion_tokens"] > 0
    assert row["request_seed"] > 0 and row["error"] is None
    assert row["prompt"] == shard_rows[0]["prompt"]


class CrashAtEndEngine(FakeEngine):
    def run(self, requests):
        yield from super().run(requests)
        raise Crash("killed after the last row")


def test_finished_shard_rerun_does_not_start_the_engine(prompt_file, tmp_path):
    prompts_path, shard_rows = prompt_file
    out = tmp_path / "g.parquet"
    with pytest.raises(Crash):
        generate_shard(prompts_path, out, SETTINGS, tmp_path / "s.json", CrashAtEndEngine)
    assert not out.exists()

    def no_engine(*args):
        raise AssertionError("engine started although every row was done")

    # Every row was flushed before the crash: the rerun only assembles the shard.
    stats = generate_shard(prompts_path, out, SETTINGS, tmp_path / "s.json", no_engine)
    assert stats["generated_rows"] == 0 and pq.read_table(out).num_rows == len(shard_rows)


def test_drop_duplicate_bos():
    assert drop_duplicate_bos([1, 1, 5], 1) == [1, 5]
    assert drop_duplicate_bos([1, 5], 1) == [1, 5]
    assert drop_duplicate_bos([7, 7], None) == [7, 7]


def test_cpu_bind_all_names_every_available_core():
    import os

    cores = sorted(os.sched_getaffinity(0))
    value = cpu_bind_all()
    if cores == list(range(cores[0], cores[-1] + 1)):
        assert value == f"{cores[0]}-{cores[-1]}"
    else:
        assert value == "auto"


def test_atomic_writes_leave_no_partial_file_and_honour_umask(tmp_path):
    import os

    from cosmoforge.io import atomic_path, write_text

    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed while writing")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    write_text(target, "whole")
    mask = os.umask(0)
    os.umask(mask)
    assert target.read_text() == "whole"
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_generation_job_does_not_load_numba():
    """vLLM's CPU start-up scans every loaded module and crashes on llvmlite's objects
    ("'_lib_fn_wrapper' object has no attribute 'get'"): numba stays out of that process."""
    import subprocess
    import sys

    code = (
        "import sys, cosmoforge.cli, cosmoforge.generate, cosmoforge.prompts, cosmoforge.seeds; "
        "sys.exit(int('llvmlite' in sys.modules or 'numba' in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_stable_hashes_equal_the_json_encoding_they_are_defined_by():
    import hashlib
    import json

    from cosmoforge.io import derive_seed, stable_hash

    for parts in [("web", "w:1", "t", ""), (1234, 'a"b', "c\\d"), ("é", "\n", "~ !")]:
        digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode("utf-8"))
        assert stable_hash(*parts) == digest.hexdigest()[:16]
        assert derive_seed(*parts) == int.from_bytes(digest.digest()[:8], "big") % (1 << 31)
