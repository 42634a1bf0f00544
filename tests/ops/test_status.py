import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cosmoforge.cli import main
from cosmoforge.core.layout import Layout
from cosmoforge.ops.status import format_status, run_status
from cosmoforge.stages.generate import parts_dir


def synthetic_run(tmp_path, config, prompts_per_shard, now):
    """A run of `config` laid out on disk: per split, shard 0 done, shard 1 running (a part
    written a minute ago), shard 2 interrupted (a part from an hour ago), the rest pending."""
    layout = Layout(config)
    for split in layout.splits:
        shards = layout.shards(split)
        report = {"per_shard": {str(int(s)): prompts_per_shard for s in shards}}
        path = tmp_path / layout.prompt_report(split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report))
        done = tmp_path / layout.generated(split, shards[0])
        done.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"sample_id": ["x"]}), done)
        stats = {
            "rows": prompts_per_shard,
            "total_completion_tokens": 100 * prompts_per_shard,
            "engine_start_s": 60.0,
            "prefix_cache_queries": 1000,
            "prefix_cache_hits": 600,
            "generate_s": 3540.0,
            "engine_restarts": 1,
            "engine_lost_s": 95.5,
        }
        done.with_name(done.stem + ".stats.json").write_text(json.dumps(stats))
        for shard, age in ((shards[1], 60), (shards[2], 3600)):
            folder = tmp_path / parts_dir(tmp_path / layout.generated(split, shard))
            folder.mkdir(parents=True)
            part = folder / "part-00000.parquet"
            pq.write_table(pa.table({"completion_tokens": pa.array([100] * 10, pa.int32())}), part)
            os.utime(part, (now - age, now - age))


def test_status_counts_shards_rows_tokens_and_gpu_hours(default_config, tmp_path, repo):
    config = default_config
    for split in config["splits"].values():
        split["shards"] = 4
    config["engine"]["tensor_parallel_size"] = 2
    now = time.time()
    synthetic_run(tmp_path, config, 50, now)
    # Plans read seed files and templates relative to the base folder.
    (tmp_path / "resources").symlink_to(repo / "resources")
    (tmp_path / "prompts").symlink_to(repo / "prompts")
    status = run_status(config, tmp_path, now=now)
    for split, s in status["splits"].items():
        assert (s["done"], s["running"], s["interrupted"], s["pending"]) == (1, 1, 1, 1), split
        assert s["prompts"] == 200 and s["rows"] == 50 + 10 + 10
        assert s["completion_tokens"] == 5000 + 1000 + 1000
        # done: one hour on 2 GPUs; running: one minute on 2 GPUs
        assert abs(s["gpu_hours"] - (2 + 2 * 60 / 3600)) < 0.01
    n = len(status["splits"])
    assert status["rows"] == 70 * n and status["prompts"] == 200 * n
    # Only the running shard's part is inside the 10-minute window.
    assert status["tokens_per_s_now"] == round(1000 * n / 600, 1)
    remaining = (200 - 70) * n * 100  # rows still to do x the measured tokens per row
    assert status["eta_s"] == round(remaining / (1000 * n / 600))
    spent = n * (2 + 2 * 60 / 3600)
    rate = 7000 * n / (spent * 3600)  # tokens per GPU-second of this run so far
    assert status["gpu_hours_spent"] == round(spent, 3)
    assert status["tokens_per_s_per_gpu_measured"] == round(rate, 1)
    assert status["gpu_hours_projected"] == round(spent + remaining / rate / 3600, 3)
    assert status["prefix_cache_hit_rate"] == 0.6
    assert status["engine_start_share"] == round(60 / 3600, 4)
    # each split's done shard restarted its engine once and lost 95.5 s to it
    assert status["engine_restarts"] == n and status["engine_lost_s"] == round(95.5 * n, 1)
    assert f"engine restarts {n} ({95.5 * n:,.0f} s lost)" in format_status(status)


def test_status_of_a_run_not_started_uses_the_plan(default_config, repo, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(json.dumps({**default_config, "run_name": "never-run"}))
    code = main(["status", "--config", str(tmp_path / "c.yaml"), "--base-dir", str(repo), "--json"])
    assert code == 0
    status = json.loads(capsys.readouterr().out)
    assert status["rows"] == 0 and status["prompts"] > 0
    assert status["eta_s"] is None and status["gpu_hours_spent"] == 0
    assert status["gpu_hours_projected"] == status["gpu_hours_planned"] > 0
    assert all(s["pending"] == s["shards"] for s in status["splits"].values())


@pytest.mark.parametrize("value", ["-5", "0", "nan", "soon"])
def test_a_watch_interval_must_be_positive_seconds(value, capsys):
    from cosmoforge.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["status", "--watch", value])
    assert exit_.value.code == 2
    assert "argument --watch:" in capsys.readouterr().err.splitlines()[-1]


def test_a_released_shard_whose_generated_file_was_deleted_is_done(default_config, tmp_path, repo):
    # Snakemake does not rebuild a deleted intermediate whose products exist: status agrees.
    config = default_config
    for split in config["splits"].values():
        split["shards"] = 4
    now = time.time()
    synthetic_run(tmp_path, config, 50, now)
    (tmp_path / "resources").symlink_to(repo / "resources")
    (tmp_path / "prompts").symlink_to(repo / "prompts")
    layout = Layout(config)
    for split in layout.splits:
        release = tmp_path / layout.release_file(split, layout.shards(split)[3])
        release.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": ["x"]}), release)
    status = run_status(config, tmp_path, now=now)
    for split, s in status["splits"].items():
        assert (s["done"], s["running"], s["interrupted"], s["pending"]) == (2, 1, 1, 0), split
