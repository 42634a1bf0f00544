"""Small configs beside the default, each planned by Snakemake (dry run) in its own temporary
working folder: the DAG must build and its job counts must equal the plan's
(cosmoforge.core.layout). The Slurm profile is dry-run too."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cosmoforge.core.config import resolve_config
from cosmoforge.core.layout import Layout
from tests.helpers import one_split_config, snakemake_job_counts, workdir

pytestmark = pytest.mark.dryrun
CONFIGS = sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.yaml"))


# Matrix configs that are overlays on the embedded default cut down to one split.
ON_ONE_SPLIT = {"one_split", "server_backend"}


def workdir_for(repo, tmp_path, config_name) -> tuple[Path, list[str]]:
    """A working folder with the checkout's config, prompts and resources linked in, and the
    config files of the matrix entry, in order: its base, then its overlay."""
    work = workdir(tmp_path / "work")
    if config_name in ON_ONE_SPLIT:
        base = str(one_split_config(work / "base.yaml", "wikihow", "matrix", max_tokens=192))
    else:
        base = "config/config.yaml"
    return work, [base, str(repo / "tests" / "configs" / f"{config_name}.yaml")]


@pytest.mark.parametrize("name", CONFIGS)
def test_each_config_of_the_matrix_plans_the_jobs_the_layout_counts(repo, tmp_path, name):
    work, files = workdir_for(repo, tmp_path, name)
    config = resolve_config(files, base_dir=work)
    counts = snakemake_job_counts(
        work, "-s", str(repo / "Snakefile"), "--directory", str(work), "--configfile", *files
    )
    counts.pop("total")
    if name == "hub_model":  # a hub id is not a file: nothing to convert
        assert "convert_model" not in counts
    # --forceall plans the model conversion; the layout counts it only when it is missing.
    counts.pop("convert_model", None)
    expected = {r: n for r, n in Layout(config).job_counts(work).items() if n}
    expected.pop("convert_model", None)
    assert counts == expected
    if name == "server_backend":  # the server loads the model; its clients load none
        assert "convert_model" not in counts
    if name in ("topics_off", "one_split", "server_backend"):
        assert not any(rule.startswith("topics_") for rule in counts)


def test_the_slurm_profile_dry_runs_the_default(repo, tmp_path):
    counts = snakemake_job_counts(
        repo, "--profile", "profiles/slurm", "--config", f"run_name=matrix-slurm-{tmp_path.name}"
    )
    assert counts["generate"] > 0 and counts["finish_shard_stories"] > 0


def generate_job_resources(cwd, *args) -> list[str]:
    """The `resources:` line of every generate job of a Slurm-profile dry run."""
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bin_dir / "snakemake"), "-n", "--forceall", "--profile", "profiles/slurm", *args],
        cwd=cwd,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = re.findall(r"^rule generate:\n(.*?)\nShell command", proc.stdout, re.M | re.S)
    return [re.search(r"resources: (.*)", job)[1] for job in jobs]


def test_generation_jobs_are_gpu_jobs_with_an_engine_and_cpu_jobs_as_clients(repo, tmp_path):
    own_engine = generate_job_resources(repo, "--config", f"run_name=matrix-{tmp_path.name}")
    assert own_engine and all("gpu=1," in r for r in own_engine)
    work, files = workdir_for(repo, tmp_path, "server_backend")
    clients = generate_job_resources(
        work, "-s", str(repo / "Snakefile"), "--directory", str(work), "--configfile", *files
    )
    assert clients and all("gpu=" not in r and "mem_mb=2000," in r for r in clients)
