import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.engines import FakeEngine
from cosmoforge.ops.calibrate import calibrate, load_calibration, sample_prompts
from cosmoforge.ops.plan import build_plan, calibration_path, format_plan, generate_runtime_minutes
from tests.helpers import SETTINGS


def test_the_probe_spreads_over_splits_and_templates_and_is_deterministic(prompt_files):
    sample = sample_prompts(prompt_files, 16, seed=1)
    assert sample.equals(sample_prompts(prompt_files, 16, seed=1))
    rows = sample.to_pylist()
    assert Counter(r["split"] for r in rows) == {"stories": 8, "openstax": 8}
    stories = Counter(r["template_id"] for r in rows if r["split"] == "stories")
    assert len(stories) == 8  # 8 story templates, one prompt each
    assert not sample.equals(sample_prompts(prompt_files, 16, seed=2))


def test_calibration_measures_and_the_plan_and_time_limits_use_it(
    prompt_files, default_config, repo, tmp_path
):
    out = tmp_path / "calibration.json"
    result = calibrate(prompt_files, SETTINGS, out, prompts=20, engine_factory=FakeEngine)
    assert json.loads(out.read_text()) == result
    assert result["prompts"] == 20 and result["tokens_per_s_per_gpu"] > 0
    sample = sample_prompts(prompt_files, 20, SETTINGS["seed"]).to_pylist()
    # The fake engine draws 30..60 tokens; the means are the probe rows' own.
    for split in ("stories", "openstax"):
        assert 30 <= result["splits"][split]["mean_completion_tokens"] <= 60
        assert result["splits"][split]["prompts"] == sum(r["split"] == split for r in sample)
    # In the run's results folder, the plan and the Slurm time limits use the measurement.
    config = default_config
    base = tmp_path / "checkout"  # the plan reads seeds and templates relative to it
    base.mkdir()
    for name in ("resources", "prompts"):
        (base / name).symlink_to(repo / name)
    assert build_plan(config, base)["measured"] is None
    path = calibration_path(config, base)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**result, "tokens_per_s_per_gpu": 35.0}))
    plan = build_plan(config, base)
    measured = plan["measured"]
    assert measured["tokens_per_s_per_gpu"] == 35.0
    stories = plan["splits"]["stories"]["prompts"]
    assert measured["expected_completion_tokens"] >= round(
        stories * result["splits"]["stories"]["mean_completion_tokens"]
    )
    assert abs(measured["gpu_hours"] - measured["expected_completion_tokens"] / 35 / 3600) < 1e-4
    assert "Generation time limits use the measured figures" in format_plan(plan)
    slow = generate_runtime_minutes(config, 1000, 50, tokens_per_s_per_gpu=1.0)
    assert slow > generate_runtime_minutes(config, 1000, 50)


def test_a_broken_calibration_file_is_an_error(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text('{"prompts": 3}')
    with pytest.raises(CosmoforgeError, match="calibration.json: not a calibration file"):
        load_calibration(path)
    assert load_calibration(tmp_path / "absent.json") is None


def test_calibrate_reads_each_split_only_as_far_as_it_needs(prompt_files):
    """A split's later shard files are not opened once enough prompts were read."""
    prompt_files["stories"].append(prompt_files["stories"][0].with_name("99999.parquet"))
    assert len(sample_prompts(prompt_files, 4, seed=1)) == 4  # the missing file is never read
    assert pq.read_table(prompt_files["stories"][0]).num_rows > 8
