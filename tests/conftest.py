import copy
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cosmoforge.config import validate_config  # noqa: E402


def pytest_collection_modifyitems(config, items):
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
