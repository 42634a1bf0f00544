"""The workflow on a real Slurm cluster (one node, a fake GPU): tests/slurm/cluster.sh starts it.

`make test` starts the cluster before pytest and stops it afterwards. The run uses
profiles/slurm as a user would, plus what this cluster needs: squeue for job status (no
accounting daemon) and short polling intervals.
"""

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import accounted_rows, e2e_workdir, one_split_config, released_split

pytestmark = pytest.mark.slurm
RUN = "pytest-slurm"
SPLIT = "stories"


def slurm_snakemake_cmd(repo, workdir):
    """The run of `repo`'s workflow in `workdir` (made by e2e_workdir): its results/ and logs/
    are the working folder's, not the checkout's."""
    bin_dir = Path(sys.executable).parent
    return [
        "timeout",
        "-k",
        "30",
        "2400",  # snakemake can ignore SIGTERM while polling
        str(bin_dir / "snakemake"),
        "-s",
        str(repo / "Snakefile"),
        "--directory",
        str(workdir),
        "--profile",
        "profiles/slurm",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--latency-wait",
        "5",
        "--configfile",
        "one-split.yaml",
        str(repo / "tests" / "slurm" / "config.yaml"),
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
    started = time.time()
    work = e2e_workdir(repo, tmp_path / "work")
    # One split (one generation job, one engine start): the cancel and the resume are what is
    # tested here; the whole DAG is the fake-engine test's and the long tier's.
    one_split_config(work / "one-split.yaml", SPLIT, RUN, max_tokens=64)
    results = work / "results" / RUN
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        first = subprocess.Popen(
            slurm_snakemake_cmd(repo, work),
            cwd=work,
            env=env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    cancelled = None
    deadline = time.time() + 1500
    while cancelled is None and time.time() < deadline and first.poll() is None:
        for job_id, state, _comment in squeue_generate_jobs():
            parts = list(results.glob("generated/*/*.parquet.parts/part-*.parquet"))
            if state == "RUNNING" and parts:
                subprocess.run(["scancel", job_id], check=True)
                parts_dir = parts[0].parent
                # The job's SIGTERM handler flushes its finished rows on the way out; count the
                # parts once it has gone (a retry needs many seconds to start vLLM).
                gone = time.time() + 60
                while squeue_job(job_id) in {"RUNNING", "COMPLETING"} and time.time() < gone:
                    time.sleep(0.2)
                flushed = settled_rows(parts_dir)
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
        slurm_snakemake_cmd(repo, work), cwd=work, env=env(), capture_output=True, text=True
    )
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    shard_output = parts_dir.with_name(parts_dir.name.removesuffix(".parts"))
    stats = json.loads(shard_output.with_name(shard_output.stem + ".stats.json").read_text())
    assert stats["resumed_rows"] == flushed > 0
    table = released_split(results, SPLIT)
    ids = table.column("sample_id").to_pylist()
    assert len(ids) == len(set(ids)) == accounted_rows(results, SPLIT) > 0
    assert (results / "release" / "README.md").is_file()
    assert not list(results.rglob("*.parts"))
    # Slurm's per-job logs are kept where the profile puts them.
    assert list((work / "logs" / "slurm").rglob("*.log"))
    in_checkout = repo / "results" / RUN  # nothing of the run lands in the checkout
    assert not in_checkout.exists() or in_checkout.stat().st_mtime < started


def many_prompts(repo, path, copies=20):
    """~300 prompts: the stories split's prompts, each under `copies` sample ids."""
    from cosmoforge.core.config import load_config
    from cosmoforge.core.tables import write_prompt_shard
    from cosmoforge.stages.prompts import build_prompt_rows
    from cosmoforge.stages.seeds import read_split_seeds
    from cosmoforge.stages.templates import load_templates

    config = load_config(repo / "config" / "config.yaml")
    seeds, _ = read_split_seeds("stories", config["splits"]["stories"]["sources"], base_dir=repo)
    rows = build_prompt_rows(
        "stories", seeds, load_templates(repo / "prompts", "stories"), seed=1, shards=1
    )
    rows = [{**r, "sample_id": f"{r['sample_id']}-{k}"} for k in range(copies) for r in rows]
    write_prompt_shard(rows, path)
    return rows


@contextlib.contextmanager
def reservation_in(seconds: int):
    """A reservation of every node starting `seconds` from now: a job with --time-min can then
    start at once only with its limit cut to end before it (Slurm's backfill)."""
    name = f"cosmoforge-test-{os.getpid()}"
    subprocess.run(
        [
            "scontrol",
            "create",
            "reservation",
            f"reservationname={name}",
            "users=root",
            f"starttime=now+{seconds}",
            "duration=30",
            "nodes=ALL",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["scontrol", "delete", f"reservationname={name}"], capture_output=True)


@pytest.mark.parametrize(
    "how",
    [
        "scancel-usr1",
        pytest.param("time-limit", marks=pytest.mark.long),
        pytest.param("time-min", marks=pytest.mark.long),
    ],
)
def test_a_signalled_generation_job_keeps_every_finished_row(repo, cluster, tmp_path, how):
    """`scancel --signal=USR1`, or the --signal the workflow asks for before a 1-minute time
    limit, or before a limit that Slurm cut to fit a backfill window (--time-min, with a
    reservation 3 minutes ahead): the job flushes every row it finished and exits 128 + 10; the
    rerun completes the shard with every prompt exactly once. flush_every is 100,000, so a
    plain kill would have saved nothing. The job runs the command in an srun step, as the Slurm
    plugin does."""
    from tests.helpers import SETTINGS, SLOW_GENERATION

    prompts = tmp_path / "prompts.parquet"
    rows = many_prompts(repo, prompts, copies=40)  # ~150 s of generation, past the limit
    handed_over = tmp_path / "handed_over.txt"
    script = tmp_path / "slow.py"
    script.write_text(
        SLOW_GENERATION.format(src=str(repo / "src"), log=str(handed_over)).replace(
            "time.sleep(0.05)", "time.sleep(0.25)"
        )
    )
    settings = {**SETTINGS, "engine": {**SETTINGS["engine"], "flush_every": 100_000}}
    out = tmp_path / "gen" / "00000.parquet"
    command = (
        f"srun -n1 {sys.executable} {script} generate --prompts {prompts} --out {out} "
        f"--stats {tmp_path / 'stats.json'} --settings '{json.dumps(settings)}'"
    )
    sbatch = ["sbatch", "--parsable", "-p", "cpu", "-o", str(tmp_path / "job.log")]
    if how == "time-limit":
        # Slurm checks warning signals periodically: it may send one up to 60 s early.
        sbatch += ["--time=2", "--signal=USR1@40"]
    if how == "time-min":
        # 15 minutes would not fit before the reservation; 2 would: backfill cuts the limit
        sbatch += ["--time=15", "--time-min=2", "--signal=USR1@40"]
    with reservation_in(180) if how == "time-min" else contextlib.nullcontext():
        job_id = subprocess.run(
            [*sbatch, "--wrap", command], capture_output=True, text=True, check=True
        ).stdout.strip()
        limit = _wait_for_the_stop(how, job_id, handed_over)
    if how == "time-min":
        # backfill started it at once with its limit cut to end before the reservation
        print(f"time-min: the job ran with a {limit} limit (asked: 15:00, at least 2:00)")
        assert 2 <= slurm_minutes(limit) < 15, limit
    _check_every_row_saved_and_resumed(
        repo, tmp_path, how, prompts, rows, out, settings, handed_over
    )


def slurm_minutes(duration: str) -> float:
    """Minutes of a Slurm duration: [D-][[H:]M:]S."""
    days, _, clock = duration.rpartition("-")
    seconds = 0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return int(days or 0) * 1440 + seconds / 60


def _wait_for_the_stop(how, job_id, handed_over) -> str:
    """Signal or wait for the job's stop; returns the time limit it ran with (squeue's %l)."""
    deadline = time.time() + 420
    limit = ""
    while time.time() < deadline:
        if not limit and squeue_job(job_id) == "RUNNING":
            limit = subprocess.run(
                ["squeue", "-h", "-j", job_id, "-o", "%l"], capture_output=True, text=True
            ).stdout.strip()
        finished = handed_over.read_text().split() if handed_over.exists() else []
        if how == "scancel-usr1" and len(finished) >= 10:
            subprocess.run(["scancel", "--signal=USR1", job_id], check=True)
            break
        if how != "scancel-usr1" and not squeue_job(job_id):
            break
        time.sleep(0.5)
    while squeue_job(job_id) and time.time() < deadline:
        time.sleep(0.5)
    return limit


def _check_every_row_saved_and_resumed(
    repo, tmp_path, how, prompts, rows, out, settings, handed_over
):
    from cosmoforge.stages.generate import generate_shard, parts_dir

    log = (tmp_path / "job.log").read_text()
    assert "stopped by SIGUSR1; every finished row is saved" in log, log[-3000:]
    assert not out.exists()
    saved = [
        i
        for p in sorted(parts_dir(out).glob("part-*.parquet"))
        for i in pq.read_table(p).column("sample_id").to_pylist()
    ]
    finished = handed_over.read_text().split()
    assert len(saved) >= (10 if how == "scancel-usr1" else 1)
    assert set(finished) - set(saved) <= {finished[-1]}
    print(f"{how}: {len(saved)} finished rows saved by the handler (a plain kill: 0)")
    stats = generate_shard(prompts, out, settings, tmp_path / "stats.json")
    assert stats["resumed_rows"] == len(saved)
    assert pq.read_table(out).column("sample_id").to_pylist() == [r["sample_id"] for r in rows]


def settled_rows(parts_dir, quiet_s=3.0):
    """Rows in a shard's parts once no part has been added for `quiet_s` seconds (the job's
    last flush may land just after Slurm stops listing it)."""
    seen = None
    while True:
        parts = sorted(parts_dir.glob("part-*.parquet"))
        if parts == seen:
            return sum(pq.read_table(p).num_rows for p in parts)
        seen = parts
        time.sleep(quiet_s)


def squeue_job(job_id):
    """The job's state, or "" once Slurm no longer lists it. A failed squeue (a busy controller
    times out) is no answer: asked again, never taken for a job that has gone, which would
    count a cancelled job's parts before its last flush."""
    for _ in range(30):
        out = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True
        )
        if out.returncode == 0 or "Invalid job id" in out.stderr:
            return out.stdout.strip()
        time.sleep(1)
    raise RuntimeError(f"squeue gave no answer about job {job_id}: {out.stderr.strip()}")


@pytest.mark.vllm
@pytest.mark.long
def test_a_vllm_server_job_serves_the_generation_jobs(repo, cluster, small_model, tmp_path):
    """The README's server recipe: `cosmoforge serve` as a Slurm job writes its overlay once
    `vllm serve` answers; a shard generated with that overlay goes through the server (rows as
    offline, every prompt once); scancel stops the server and takes the overlay away."""
    import yaml

    from cosmoforge.core.config import load_config
    from cosmoforge.core.layout import Layout
    from cosmoforge.core.tables import GENERATION_SCHEMA
    from cosmoforge.stages.generate import generate_shard

    overlay, serve_log = tmp_path / "server.yaml", tmp_path / "serve.log"
    # As in the README: the server runs in a job step (srun), which Slurm signals on scancel
    # and at the time limit.
    command = (
        f"srun {sys.executable} -m cosmoforge serve --config config/config.yaml "
        f"--overlay {overlay} --log {serve_log}"
    )
    job_id = subprocess.run(
        ["sbatch", "--parsable", "-p", "cpu", "-c", str(os.cpu_count()), "--chdir", str(repo)]
        + ["-o", str(tmp_path / "job.log"), "--wrap", command],
        capture_output=True,
        text=True,
        check=True,
        env=env(),
    ).stdout.strip()
    try:
        deadline = time.time() + 420
        while not overlay.exists() and squeue_job(job_id) and time.time() < deadline:
            time.sleep(1)
        job_log = (tmp_path / "job.log").read_text() if (tmp_path / "job.log").exists() else ""
        assert overlay.exists(), job_log[-2000:] + (
            serve_log.read_text()[-3000:] if serve_log.exists() else ""
        )
        config = load_config(repo / "config" / "config.yaml", yaml.safe_load(overlay.read_text()))
        assert config["engine"]["backend"] == "openai"
        prompts = tmp_path / "prompts.parquet"
        rows = many_prompts(repo, prompts, copies=1)[:6]
        from cosmoforge.core.tables import write_prompt_shard

        write_prompt_shard(rows, prompts)
        settings = Layout(config).generate_settings("stories")
        settings = dataclasses.replace(settings, sampling={**settings.sampling, "max_tokens": 32})
        out = tmp_path / "00000.parquet"
        stats = generate_shard(prompts, out, settings, tmp_path / "stats.json")
    finally:
        subprocess.run(["scancel", job_id], check=False)
    table = pq.read_table(out)
    assert table.schema.names == GENERATION_SCHEMA.names
    assert table.column("sample_id").to_pylist() == [r["sample_id"] for r in rows]
    assert all(r["error"] is None and r["text"].strip() for r in table.to_pylist())
    assert set(table.column("engine").to_pylist()) == {"openai"}
    assert stats["rows"] == len(rows)
    deadline = time.time() + 120
    while squeue_job(job_id) and time.time() < deadline:
        time.sleep(1)
    assert not squeue_job(job_id)
    assert not overlay.exists()  # no stale address for the next run
    assert "stopped by SIGTERM; stopping the server" in (tmp_path / "job.log").read_text()
