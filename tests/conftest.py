import copy
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cosmoforge.core.config import validate_config  # noqa: E402
from cosmoforge.core.tables import write_prompt_shard  # noqa: E402
from cosmoforge.stages.prompts import build_prompt_rows  # noqa: E402
from cosmoforge.stages.seeds import read_split_seeds  # noqa: E402
from cosmoforge.stages.templates import load_templates  # noqa: E402


def pytest_collection_modifyitems(config, items):
    # Tiers: a test that uses the MiniLM embedder (directly or through a fixture) loads a real
    # model; so does every vLLM test.
    for item in items:
        if "embedder" in item.fixturenames or "vllm" in item.keywords:
            item.add_marker(pytest.mark.model)
    # The real-model tests are part of the suite, not optional extras: they are only left out
    # when a developer asks for it explicitly, and then pytest reports them as skipped.
    for marker, variable in (("vllm", "COSMOFORGE_SKIP_VLLM"), ("slurm", "COSMOFORGE_SKIP_SLURM")):
        if os.environ.get(variable) == "1":
            skip = pytest.mark.skip(reason=f"{variable}=1")
            for item in items:
                if marker in item.keywords:
                    item.add_marker(skip)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def small_model(repo) -> Path:
    """The default config's model folder (SmolLM2-135M), converted from its GGUF if absent, as
    the workflow's own rule would."""
    import subprocess

    from cosmoforge.core.config import load_config

    config = load_config(repo / "config" / "config.yaml")
    model_path = repo / config["model"]["path"]
    if not model_path.is_dir():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cosmoforge",
                "convert-model",
                "--package",
                config["model"]["gguf"]["package"],
                "--file",
                config["model"]["gguf"]["file"],
                "--out",
                str(model_path),
            ],
            check=True,
            capture_output=True,
        )
    return model_path


@pytest.fixture(scope="session")
def default_config_raw() -> dict:
    with open(REPO / "config" / "config.yaml") as fh:
        return yaml.safe_load(fh)


@pytest.fixture
def default_config(default_config_raw) -> dict:
    config = copy.deepcopy(default_config_raw)
    for split in config["splits"].values():
        for source in split["sources"]:
            if "path" in source:
                source["path"] = str(REPO / source["path"])
    return validate_config(config)


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


@pytest.fixture
def prompt_files(repo, default_config, tmp_path):
    files = {}
    for split in ("stories", "openstax"):
        seeds, _ = read_split_seeds(split, default_config["splits"][split]["sources"])
        rows = build_prompt_rows(
            split, seeds, load_templates(repo / "prompts", split), seed=5, shards=2
        )
        files[split] = []
        for shard in (0, 1):
            path = tmp_path / "prompts" / split / f"{shard:05d}.parquet"
            write_prompt_shard([r for r in rows if r["shard"] == shard], path)
            files[split].append(path)
    return files
