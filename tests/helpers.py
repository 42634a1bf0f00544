"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

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
