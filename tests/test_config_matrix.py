"""Small configs beside the default, each planned by Snakemake (dry run) in its own temporary
working folder: the DAG must build and its job counts must equal the plan's (cosmoforge.layout).
The Slurm profile is dry-run too."""

import shutil
from pathlib import Path

import pytest

from cosmoforge.config import load_config
from cosmoforge.layout import Layout
from tests.test_plan import snakemake_job_counts

CONFIGS = sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.yaml"))


def workdir_for(repo, tmp_path, config_name):
    """A working folder whose config/config.yaml is the matrix config (the Snakefile's own
    configfile line reads it), with the checkout's prompts and resources beside it."""
    (tmp_path / "config").mkdir()
    shutil.copy(
        repo / "tests" / "configs" / f"{config_name}.yaml", tmp_path / "config" / "config.yaml"
    )
    for name in ("prompts", "resources", "profiles"):
        (tmp_path / name).symlink_to(repo / name)
    return tmp_path


@pytest.mark.parametrize("name", CONFIGS)
def test_each_config_of_the_matrix_plans_the_jobs_the_layout_counts(repo, tmp_path, name):
    work = workdir_for(repo, tmp_path, name)
    config = load_config(work / "config" / "config.yaml")
    counts = snakemake_job_counts(work, "-s", str(repo / "Snakefile"), "--directory", str(work))
    counts.pop("total")
    if name == "hub_model":  # a hub id is not a file: nothing to convert
        assert "convert_model" not in counts
    # --forceall plans the model conversion; the layout counts it only when it is missing.
    counts.pop("convert_model", None)
    expected = {r: n for r, n in Layout(config).job_counts(work).items() if n}
    expected.pop("convert_model", None)
    assert counts == expected
    if name in ("topics_off", "one_split"):
        assert not any(rule.startswith("topics_") for rule in counts)


def test_the_slurm_profile_dry_runs_the_default(repo, tmp_path):
    counts = snakemake_job_counts(
        repo, "--profile", "profiles/slurm", "--config", f"run_name=matrix-slurm-{tmp_path.name}"
    )
    assert counts["generate"] > 0 and counts["finish_shard_stories"] > 0
