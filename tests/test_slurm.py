"""The workflow on a real Slurm cluster (one node, a fake GPU): tests/slurm/cluster.sh starts it.

`make test` starts the cluster before pytest and stops it afterwards. The run uses
profiles/slurm as a user would, plus what this cluster needs: squeue for job status (no
accounting daemon) and short polling intervals.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cosmoforge import SPLITS
from tests.test_workflow import accounted_rows, released_split

pytestmark = pytest.mark.slurm
RUN = "pytest-slurm"


def slurm_snakemake_cmd(repo):
    bin_dir = Path(sys.executable).parent
    return [
        "timeout",
        "-k",
        "30",
        "2400",  # snakemake can ignore SIGTERM while polling
        str(bin_dir / "snakemake"),
        "--profile",
        "profiles/slurm",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--latency-wait",
        "5",
        "--configfile",
        "config/config.yaml",
        "tests/slurm/config.yaml",
        "--config",
        f"run_name={RUN}",
    ]


def env():
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}


def squeue_generate_jobs():
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True)
    jobs = []
    for line in out.stdout.splitlines():
        job_id, state, comment = line.split("|", 2)
        if "rule_generate" in comment:
            jobs.append((job_id, state, comment))
    return jobs


@pytest.fixture(scope="module")
def cluster():
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split()[0] in {"idle", "mixed", "allocated"}, (
        "no Slurm cluster: run `tests/slurm/cluster.sh start` (make test does)"
    )


def test_profile_run_survives_a_cancelled_generation_job(repo, cluster, tmp_path):
    """End to end on Slurm; scancel a generation job mid-shard; rerun; nothing lost or doubled."""
    shutil.rmtree(repo / "results" / RUN, ignore_errors=True)
    shutil.rmtree(repo / "logs" / RUN, ignore_errors=True)
    results = repo / "results" / RUN
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        first = subprocess.Popen(
            slurm_snakemake_cmd(repo), cwd=repo, env=env(), stdout=log, stderr=subprocess.STDOUT
        )
    cancelled = None
    deadline = time.time() + 1500
    while cancelled is None and time.time() < deadline and first.poll() is None:
        for job_id, state, _comment in squeue_generate_jobs():
            parts = list(results.glob("generated/*/*.parquet.parts/part-*.parquet"))
            if state == "RUNNING" and parts:
                subprocess.run(["scancel", job_id], check=True)
                parts_dir = parts[0].parent
                # Nothing flushes after the cancel; a retry needs many seconds to start vLLM.
                flushed = sum(pq.read_table(p).num_rows for p in parts_dir.glob("part-*.parquet"))
                cancelled = (job_id, parts_dir, flushed)
                break
        time.sleep(0.5)
    assert cancelled, "no generation job was caught mid-shard:\n" + first_log.read_text()[-3000:]
    _, parts_dir, flushed = cancelled
    # The profile's `retries` may resubmit the cancelled job within this run (it then resumes
    # from its parts); otherwise the run fails and the rerun below finishes the shard.
    first.wait(timeout=1800)
    assert "CANCELLED" in first_log.read_text()
    second = subprocess.run(
        slurm_snakemake_cmd(repo), cwd=repo, env=env(), capture_output=True, text=True
    )
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    shard_output = parts_dir.with_name(parts_dir.name.removesuffix(".parts"))
    stats = json.loads(shard_output.with_name(shard_output.stem + ".stats.json").read_text())
    assert stats["resumed_rows"] == flushed > 0
    for split in SPLITS:
        table = released_split(results, split)
        ids = table.column("sample_id").to_pylist()
        assert len(ids) == len(set(ids)) == accounted_rows(results, split) > 0
    assert (results / "release" / "README.md").is_file()
    assert not list(results.rglob("*.parts"))
    # Slurm's per-job logs are kept where the profile puts them.
    assert list((repo / "logs" / "slurm").rglob("*.log"))
