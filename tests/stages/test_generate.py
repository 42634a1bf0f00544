import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cosmoforge.core.tables import write_prompt_shard
from cosmoforge.engines import FakeEngine, cpu_bind_all, drop_duplicate_bos
from cosmoforge.stages.generate import generate_shard, parts_dir, set_aside_dir
from tests.helpers import SETTINGS, SLOW_GENERATION


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


def crashed_shard(prompts_path, tmp_path, limit=10):
    out = tmp_path / "gen" / "00000.parquet"
    with pytest.raises(Crash):
        generate_shard(prompts_path, out, SETTINGS, tmp_path / "s.json", factory(limit=limit))
    parts = sorted(parts_dir(out).glob("part-*.parquet"))
    assert parts
    return out, parts


def finish_and_check_all_new(prompts_path, out, settings, tmp_path, shard_rows):
    stats = generate_shard(prompts_path, out, settings, tmp_path / "s.json")
    table = pq.read_table(out)
    assert table.column("sample_id").to_pylist() == [r["sample_id"] for r in shard_rows]
    assert not parts_dir(out).exists()
    return stats, table


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"sampling": {**SETTINGS["sampling"], "temperature": 0.9}},
            "sampling.temperature 0.6 -> 0.9",
        ),
        ({"model": {**SETTINGS["model"], "revision": "r2"}}, 'model.revision "r1" -> "r2"'),
        ({"seed": 6}, "seed 5 -> 6"),
        ({"engine": {**SETTINGS["engine"], "dtype": "float32"}}, 'engine.dtype null -> "float32"'),
    ],
)
def test_parts_made_with_other_settings_are_set_aside_not_merged(
    prompt_file, tmp_path, caplog, change, expected
):
    prompts_path, shard_rows = prompt_file
    out, parts = crashed_shard(prompts_path, tmp_path)
    settings = {**SETTINGS, **change}
    stats, table = finish_and_check_all_new(prompts_path, out, settings, tmp_path, shard_rows)
    assert stats["resumed_rows"] == 0 and stats["generated_rows"] == len(shard_rows)
    if "sampling" in change:
        assert set(table.column("sampling").to_pylist()) == {
            json.dumps(settings["sampling"], sort_keys=True)
        }
    aside = set_aside_dir(parts_dir(out))
    assert sorted(p.name for p in aside.iterdir()) == [p.name for p in parts]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == len(parts)
    assert f"{parts[0]}: not reused, it was made with other settings: {expected}" in warnings[0]


def test_parts_whose_prompt_text_changed_are_set_aside(prompt_file, tmp_path, caplog):
    prompts_path, shard_rows = prompt_file
    out, parts = crashed_shard(prompts_path, tmp_path, limit=6)  # parts of 4 and 2 rows
    edited = [dict(r) for r in shard_rows]
    edited[5]["prompt"] += " Use short sentences."  # a row of the second part
    write_prompt_shard(edited, prompts_path)
    stats, table = finish_and_check_all_new(prompts_path, out, SETTINGS, tmp_path, edited)
    assert stats["resumed_rows"] == 4  # the first part is still current
    assert table.column("prompt").to_pylist()[5] == edited[5]["prompt"]
    message = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert message == [
        f"{parts[1]}: not reused, the prompt of sample {edited[5]['sample_id']!r} has changed "
        f"(template or seed edited); moved to {set_aside_dir(parts_dir(out)) / parts[1].name}"
    ]


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda p: p.write_bytes(b"PAR1 not really parquet"), "it is unreadable"),
        (lambda p: p.write_bytes(p.read_bytes()[:-40]), "it is unreadable"),
        (
            lambda p: pq.write_table(pa.table({"sample_id": ["x"]}), p),
            "it lacks column(s) ['split', 'shard'",
        ),
        (
            lambda p: pq.write_table(pq.read_table(p).replace_schema_metadata(None), p),
            "it records no generation settings (made by an older cosmoforge)",
        ),
    ],
    ids=["not-parquet", "truncated", "wrong-schema", "no-fingerprint"],
)
def test_damaged_parts_are_named_set_aside_and_the_shard_completes(
    prompt_file, tmp_path, caplog, damage, expected
):
    prompts_path, shard_rows = prompt_file
    out, parts = crashed_shard(prompts_path, tmp_path)
    damage(parts[1])
    stats, _ = finish_and_check_all_new(prompts_path, out, SETTINGS, tmp_path, shard_rows)
    assert stats["resumed_rows"] == 10 - 4  # parts 0 and 2 reused, part 1's 4 rows redone
    (message,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert message.startswith(f"{parts[1]}: not reused, {expected}")
    assert (set_aside_dir(parts_dir(out)) / parts[1].name).is_file()


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

    from cosmoforge.core.io import atomic_path, write_text

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
        "import sys, cosmoforge.cli, cosmoforge.stages.generate, cosmoforge.stages.prompts, "
        "cosmoforge.stages.seeds; "
        "sys.exit(int('llvmlite' in sys.modules or 'numba' in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_stable_hashes_equal_the_json_encoding_they_are_defined_by():
    import hashlib
    import json

    from cosmoforge.core.io import derive_seed, stable_hash

    for parts in [("web", "w:1", "t", ""), (1234, 'a"b', "c\\d"), ("é", "\n", "~ !")]:
        digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode("utf-8"))
        assert stable_hash(*parts) == digest.hexdigest()[:16]
        assert derive_seed(*parts) == int.from_bytes(digest.digest()[:8], "big") % (1 << 31)


def test_a_missing_local_model_folder_is_named_before_the_engine_starts(
    prompt_file, tmp_path, capsys, monkeypatch
):
    from cosmoforge.cli import main

    monkeypatch.setitem(sys.modules, "vllm", None)  # importing vLLM now fails loudly

    prompts_path, _ = prompt_file
    settings = {
        **SETTINGS,
        "model": {"name": "m", "path": str(tmp_path / "models" / "smollm2-typo")},
        "engine": {**SETTINGS["engine"], "backend": "vllm"},
    }
    out = tmp_path / "g.parquet"
    code = main(
        ["generate", "--prompts", str(prompts_path), "--settings", json.dumps(settings)]
        + ["--out", str(out), "--stats", str(tmp_path / "s.json")]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(
        f"model.path: no model folder at {tmp_path}/models/smollm2-typo (a local path; a hub "
        "id has the form org/name)"
    )
    assert not out.exists()


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline switch off, and a hub that no test can reach."""
    from huggingface_hub import HfApi, constants

    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(HfApi, "model_info", unreachable)
    monkeypatch.chdir(tmp_path)
    return cache


def cache_model(cache: Path, repo_id: str) -> None:
    """The layout huggingface_hub gives a downloaded model: refs/main -> snapshots/<commit>."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")


@pytest.mark.parametrize("hub_id", ["HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2"])
def test_hub_ids_in_the_cache_are_accepted(hub_cache, hub_id):
    from cosmoforge.engines.model import check_model_path

    cache_model(hub_cache, hub_id)
    check_model_path(hub_id)  # no hub request: the unreachable hub would refuse it


@pytest.mark.parametrize(
    ("path", "offline", "expected"),
    [
        (
            "org/smollm2",
            False,
            r"nor in the Hugging Face cache \(.*hub-cache\), and the hub "
            r"cannot be reached \(ConnectionError\): download it .*`hf download org/smollm2`",
        ),
        ("gpt2", True, r"gpt2 is not a local folder .* and HF_HUB_OFFLINE is set"),
        (
            "mymodels/smollm2",
            False,
            r"no model folder at mymodels/smollm2 \(a local path, since "
            r"mymodels/ exists here",
        ),
    ],
)
def test_a_model_that_cannot_be_loaded_is_one_line(hub_cache, monkeypatch, path, offline, expected):
    from huggingface_hub import constants

    from cosmoforge.core.errors import CosmoforgeError
    from cosmoforge.engines.model import check_model_path

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    (hub_cache.parent / "mymodels").mkdir()
    cache_model(hub_cache, "gpt2-other")
    with pytest.raises(CosmoforgeError, match=expected):
        check_model_path(path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_flushes_every_finished_row_then_exits_non_zero(
    repo, prompt_file, tmp_path, signum
):
    """Slurm's SIGTERM (preemption, scancel, time limit) or the profile's early SIGUSR1: rows
    finished since the last flush are saved, where a plain kill would lose them all."""
    prompts_path, shard_rows = prompt_file
    handed_over = tmp_path / "handed_over.txt"
    script = tmp_path / "slow.py"
    script.write_text(SLOW_GENERATION.format(src=str(repo / "src"), log=str(handed_over)))
    settings = {**SETTINGS, "engine": {**SETTINGS["engine"], "flush_every": 1000}}
    out = tmp_path / "gen" / "00000.parquet"
    cmd = [sys.executable, str(script), "generate", "--prompts", str(prompts_path)]
    cmd += ["--settings", json.dumps(settings), "--out", str(out), "--stats", str(tmp_path / "s")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (
        not handed_over.exists() or len(handed_over.read_text().split()) < 5
    ):
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert f"stopped by {signal.Signals(signum).name}; every finished row is saved" in err
    assert not out.exists()
    saved = [
        i
        for p in sorted(parts_dir(out).glob("part-*.parquet"))
        for i in pq.read_table(p).column("sample_id").to_pylist()
    ]
    finished = handed_over.read_text().split()
    # flush_every is 1,000, so without the handler none of these rows would be on disk.
    assert len(saved) >= 5 and set(finished) - set(saved) <= {finished[-1]}
    stats = generate_shard(prompts_path, out, settings, tmp_path / "s.json")
    assert stats["resumed_rows"] == len(saved)
    ids = pq.read_table(out).column("sample_id").to_pylist()
    assert ids == [r["sample_id"] for r in shard_rows]


def test_stats_record_the_gpu_hours_the_job_held(prompt_file, tmp_path):
    prompts_path, _ = prompt_file
    settings = {**SETTINGS, "engine": {**SETTINGS["engine"], "tensor_parallel_size": 2}}
    stats = generate_shard(prompts_path, tmp_path / "g.parquet", settings, tmp_path / "s.json")
    assert stats["job_s"] >= stats["engine_start_s"] + stats["generate_s"]
    assert stats["gpu_hours"] == round(stats["job_s"] * 2 / 3600, 6)
    assert json.loads((tmp_path / "s.json").read_text())["gpu_hours"] == stats["gpu_hours"]


def test_a_signal_during_engine_start_up_exits_cleanly(repo, prompt_file, tmp_path):
    """SIGUSR1 while the engine is still starting (vLLM takes a while): no traceback, exit
    128 + 10, nothing written, and the rerun generates the shard."""
    prompts_path, shard_rows = prompt_file
    started = tmp_path / "starting"
    script = tmp_path / "slow_start.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(repo / 'src')!r})\n"
        "from cosmoforge.cli import main\n"
        "from cosmoforge.engines import ENGINES, FakeEngine\n"
        "class SlowStart(FakeEngine):\n"
        "    def __init__(self, *args):\n"
        f"        open({str(started)!r}, 'w').close(); time.sleep(30)\n"
        "ENGINES['fake'] = SlowStart\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "gen" / "00000.parquet"
    cmd = [sys.executable, str(script), "generate", "--prompts", str(prompts_path)]
    cmd += ["--settings", json.dumps(SETTINGS), "--out", str(out), "--stats", str(tmp_path / "s")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGUSR1, err
    assert err.strip().splitlines()[-1].endswith("rerun to resume") and "Traceback" not in err
    assert not out.exists()
    generate_shard(prompts_path, out, SETTINGS, tmp_path / "s.json")
    assert pq.read_table(out).num_rows == len(shard_rows)
