"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.tables import GENERATION_SCHEMA

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
_JOB = re.compile(
    r"^(?:local)?rule (\w+):\n(?P<body>.*?)^Shell command: (?P<shell>.*?)$", re.M | re.S
)


def workdir(folder: Path, *, link=("config", "prompts", "resources", "profiles")) -> Path:
    """A working folder outside the checkout with the checkout's folders linked in; results/,
    logs/ and .snakemake/ of a run there are its own."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in link:
        (folder / name).symlink_to(REPO / name)
    return folder


def snakemake(
    work: Path, *args: str, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """The checkout's Snakefile run in `work` with this interpreter's snakemake (`env`: extra
    environment variables)."""
    return subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(work), *args],
        cwd=work,
        env={
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "HF_HUB_OFFLINE": "1",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dry_run_jobs(work: Path, *args: str) -> tuple[list[dict], str]:
    """Every job of `snakemake -n -p --forceall ARGS`: {"rule", "wildcards", "resources",
    "input", "shell", "argv"}, and what the dry run printed on stderr."""
    proc = snakemake(work, "-n", "-p", "--forceall", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = []
    for match in _JOB.finditer(proc.stdout):
        body = match["body"]
        wildcards = re.search(r"^\s+wildcards: (.*)$", body, re.M)
        resources = re.search(r"^\s+resources: (.*)$", body, re.M)
        inputs = re.search(r"^\s+input: (.*)$", body, re.M)
        shell = match["shell"].split(" > ")[0]
        jobs.append(
            {
                "rule": match[1],
                "wildcards": dict(w.split("=", 1) for w in wildcards[1].split(", "))
                if wildcards
                else {},
                "resources": resources[1] if resources else "",
                "input": inputs[1].split(", ") if inputs else [],
                "shell": shell,
                "argv": shlex.split(shell),
            }
        )
    return jobs, proc.stderr


def flag(job: dict, name: str):
    """The value after `name` in a job's command line (JSON decoded for --settings)."""
    argv = job["argv"]
    value = argv[argv.index(name) + 1]
    return json.loads(value) if name == "--settings" else value


def one_split_config(path: Path, split: str, run_name: str, max_tokens: int) -> Path:
    """The embedded default cut down to one split, written as a user's own config file: what
    the default test tier runs through the real model and on Slurm (one engine start per run;
    the whole DAG of all eight splits runs there with the fake engine, and in the long tier with
    the model)."""
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    config["splits"] = {split: config["splits"][split]}
    config["run_name"] = run_name
    config["sampling"]["max_tokens"] = max_tokens
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# --- shared inputs and checks of several test modules ---------------------------------------

# Generation settings of the fake engine (generate, calibrate, canary, openai tests).
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

# A `cosmoforge generate` whose fake engine records each completion as it hands it over and then
# pauses: the preemption tests signal it mid-shard. Format with src and log.
SLOW_GENERATION = """
import json, sys, time
sys.path.insert(0, {src!r})
from cosmoforge.cli import main
from cosmoforge.engines import ENGINES, FakeEngine

class Slow(FakeEngine):
    # Each completion is recorded (fsynced) as it is handed over, then the engine pauses.
    def run(self, requests):
        with open({log!r}, "a") as log:
            for completion in super().run(requests):
                log.write(completion.sample_id + "\\n"); log.flush()
                yield completion
                time.sleep(0.05)

ENGINES["fake"] = Slow
sys.exit(main(sys.argv[1:]))
"""

# MinHash parameters of the dedup tests (small, fast, still Cosmopedia's shape).
DEDUP_PARAMS = {
    "n_grams": 5,
    "num_buckets": 14,
    "hashes_per_bucket": 8,
    "seed": 1,
    "hash_precision": 64,
    "hash_fc": "xxhash",
    "bucket_workers": 1,
}


def generated_rows(texts, finish=None, errors=None):
    rows = []
    for i, text in enumerate(texts):
        rows.append(
            {
                "sample_id": f"id{i}",
                "split": "wikihow",
                "shard": 0,
                "seed_id": f"wh:{i}",
                "seed_data": "wikihow",
                "format": "wikihow",
                "audience": "general",
                "template_id": "wikihow/wikihow_article",
                "template_version": 1,
                "variant": "",
                "topic": None,
                "topic_injected": False,
                "topic_cluster": None,
                "prompt": f"Title: {i}",
                "text": text,
                "finish_reason": (finish or {}).get(i, "stop"),
                "prompt_tokens": 10,
                "completion_tokens": 50,
                "error": (errors or {}).get(i),
                "model": "m",
                "model_revision": "rev",
                "engine": "vllm",
                "engine_version": "0.32.0",
                "sampling": "{}",
                "request_seed": i,
            }
        )
    return pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA)


LONG = "Step one: gather the materials you need and check them carefully. " * 4


def snakemake_job_counts(repo, *args) -> dict:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(bin_dir / "snakemake"), "-n", "--quiet", "rules", "--forceall", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = proc.stdout.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def e2e_workdir(repo, folder: Path) -> Path:
    """A working folder for a whole run outside the checkout: the checkout's config, prompts,
    seeds, models and profiles linked in; results/ and logs/ are its own."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config", "prompts", "resources", "profiles"):
        (folder / name).symlink_to(repo / name)
    return folder


def released_split(results, split):
    return pq.read_table(sorted((results / "release" / split).glob("train-*.parquet")))


def accounted_rows(results, split):
    """Released rows of a split, after checking that every prompt is accounted for."""
    prompts = sum(
        json.loads(p.read_text())["prompts"]
        for p in (results / "prompts" / split).glob("*.report.json")
    )
    split_report = json.loads((results / "prompts" / f"{split}.report.json").read_text())
    assert split_report["prompts"] == prompts
    dedup = json.loads((results / "dedup" / "report.json").read_text())["per_split"][split]
    contaminated = sum(
        pq.read_table(p).num_rows for p in (results / "decont" / "contaminated" / split).glob("*")
    )
    report = json.loads((results / "release" / "stats.json").read_text())["splits"][split]
    assert dedup["documents"] == prompts
    assert report["generated"] == prompts - dedup["removed"] - contaminated
    assert report["rows"] + sum(report["left_out"].values()) == report["generated"]
    assert report["rows"] == released_split(results, split).num_rows
    return report["rows"]
