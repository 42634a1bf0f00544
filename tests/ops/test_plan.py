import json
from pathlib import Path

import pytest

from cosmoforge.core.config import load_config
from cosmoforge.ops.plan import build_plan, format_plan, generate_runtime_minutes
from tests.helpers import snakemake_job_counts


@pytest.mark.dryrun
def test_plan_matches_snakemake_dry_run_for_the_default(repo):
    config = load_config(repo / "config" / "config.yaml")
    plan = build_plan(config, repo)
    counts = snakemake_job_counts(repo)
    # --forceall plans the model conversion too; the plan counts it only when it is missing.
    total = counts.pop("total") - counts.pop("convert_model", 0)
    assert total == sum(counts.values())
    planned = {rule: n for rule, n in plan["jobs"].items() if n and rule != "convert_model"}
    assert planned == counts
    # The bundled seeds are counted from the files: 115 prompts, of which 26 for the 20 web seeds
    # (routed: 4/3 templates per seed on average, as the plan assumes before labelling).
    assert plan["prompts"] == 115
    assert plan["splits"]["web_samples_v1"]["prompts"] == 13


def test_preset_plan_is_cosmopedia_scale_with_low_thousands_of_jobs(repo):
    config = load_config(repo / "config" / "presets" / "cosmopedia.yaml")
    plan = build_plan(config, repo)
    assert 29e6 < plan["prompts"] < 33e6  # Cosmopedia: 31M rows
    assert 20e9 < plan["expected_completion_tokens"] < 30e9  # ~25B tokens
    assert 500 <= plan["jobs"]["generate"] <= 1500
    # A shard's CPU stages after dedup are one job (finish_shard); local rules are not submitted.
    assert plan["total_jobs"] < 2700
    assert plan["cluster_jobs"] == plan["total_jobs"] - 6
    assert all(s["prompts_per_shard"] <= 45000 for s in plan["splits"].values())
    text = format_plan(plan)
    assert "GPU-hours" in text and "generate" in text


def test_generation_time_limit_grows_with_the_shard():
    config = {
        "slurm": {"tokens_per_s_per_gpu": 100, "engine_start_minutes": 5, "runtime_margin": 2.0},
        "engine": {"tensor_parallel_size": 2},
    }
    # 6,000 prompts x 200 tokens / (100 tok/s x 2 GPUs) = 100 min, x 2 margin + 5 start.
    assert generate_runtime_minutes(config, 6000, 200) == 205
    assert generate_runtime_minutes(config, 0, 200) == 5


def test_plan_cli(repo, capsys):
    from cosmoforge.cli import main

    assert (
        main(["plan", "--config", str(repo / "config" / "config.yaml"), "--base-dir", str(repo)])
        == 0
    )
    out = capsys.readouterr().out
    assert "jobs per rule" in out and "web_samples_v2" in out


def test_plan_prints_cpu_core_hours_at_measured_rates(repo, tmp_path):
    import json
    import shutil

    shutil.copytree(repo / "prompts", tmp_path / "prompts")
    shutil.copytree(repo / "resources" / "seeds", tmp_path / "resources" / "seeds")
    (tmp_path / "resources" / "cpu_rates.json").write_text(
        json.dumps(
            {
                "rules": {
                    "finish_shard": {"core_s_per_prompt": 0.36},
                    "benchmark_index": {"core_s_per_run": 36.0},
                    "topics_fit": {"core_s_per_prompt": 0.0},
                }
            }
        )
    )
    config = load_config(repo / "config" / "config.yaml")
    plan = build_plan(config, tmp_path)
    prompts = plan["prompts"]
    assert plan["cpu_core_hours"]["finish_shard"] == 0.36 * prompts / 3600
    assert plan["cpu_core_hours"]["benchmark_index"] == 0.01
    assert "CPU side:" in format_plan(plan)
    config["topics"]["enabled"] = False
    assert "topics_fit" not in build_plan(config, tmp_path)["cpu_core_hours"]
    (tmp_path / "resources" / "cpu_rates.json").unlink()
    assert build_plan(config, tmp_path)["cpu_core_hours"] is None


def test_plan_shows_engine_start_up_as_a_share_of_generation_time(default_config, repo):
    config = default_config
    config["splits"] = {"stories": {**config["splits"]["stories"], "shards": 2}}
    config["slurm"].update(
        engine_start_minutes=1, expected_completion_tokens=100, tokens_per_s_per_gpu=50
    )
    plan = build_plan(config, repo)
    # The bundled stories seeds give 29 prompts: 2,900 tokens at 50/s is 58 s of decoding,
    # beside two engine starts of 60 s each.
    assert plan["prompts"] == 29
    assert plan["engine_start_share"] == round(120 / (120 + 58), 4) == 0.6742


def test_only_jobs_long_enough_ask_for_the_early_stop_signal(default_config):
    from cosmoforge.ops.plan import stop_signal_seconds

    config = default_config
    config["slurm"]["stop_signal_seconds"] = 300
    # A 4-minute job (the CPU demo) would be stopped at once: Slurm may signal a minute early.
    assert stop_signal_seconds(config, 4) == 0
    assert stop_signal_seconds(config, 19) == 0 and stop_signal_seconds(config, 20) == 300
    assert stop_signal_seconds(config, 579) == 300
    config["slurm"]["stop_signal_seconds"] = 0
    assert stop_signal_seconds(config, 579) == 0


ROUTINGS = {
    "one route per cluster": [("keep", "textbook"), ("keep", "blogpost"), ("keep", "wikihow")]
    + [("keep", "all")],
    "every template kept": [("keep", "all")] * 4,
    "some clusters dropped": [("drop", None), ("keep", "textbook"), ("drop", None)]
    + [("keep", "blogpost")],
}


def _run_seeds_and_topics(config, base, split, routing):
    """The split's seed file as the seeds stage writes it, and topic assignments and decisions
    in the topics stage's format (cluster i % k), at the run's own paths under `base`."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from cosmoforge.core.layout import Layout
    from cosmoforge.stages.seeds import seeds_stage
    from cosmoforge.stages.topics.common import ASSIGNMENT_SCHEMA

    layout = Layout(config)
    seeds = base / layout.seeds(split)
    seeds.parent.mkdir(parents=True, exist_ok=True)
    seeds_stage(split, layout.seeds_settings(split), seeds, base / layout.seed_report(split))
    if routing is None:
        return layout, seeds
    ids = pq.read_table(seeds, columns=["seed_id"]).column(0).to_pylist()
    k = len(routing)
    assignments = base / layout.topic_file("assignments", split, "00000")
    assignments.parent.mkdir(parents=True, exist_ok=True)
    table = {"split": [split] * len(ids), "seed_id": ids}
    table |= {"cluster": [i % k for i in range(len(ids))], "distance": [0.0] * len(ids)}
    pq.write_table(pa.table(table, schema=ASSIGNMENT_SCHEMA), assignments)
    clusters = [
        {"id": c, "decision": d, "route": r, "topic": f"topic {c}"}
        for c, (d, r) in enumerate(routing)
    ]
    (base / layout.topic_decisions()).write_text(yaml.safe_dump({"clusters": clusters}))
    return layout, seeds


@pytest.mark.parametrize("routing", [None, *ROUTINGS])
def test_the_plan_counts_the_prompts_the_prompts_stage_renders(
    default_config, repo, tmp_path, routing
):
    """Once the seeds (and for a clustered split the topic decisions) exist, the plan's prompt
    count is the rendered count, whatever the routes, drops, gates and duplicates."""
    from cosmoforge.ops.plan import estimate_split
    from cosmoforge.stages.prompts import prompts_stage

    split = "web_samples_v1"
    config = default_config
    config["prompts_dir"] = str(repo / "prompts")
    config["topics"]["enabled"] = routing is not None
    config["topics"]["kmeans"]["k"] = len(ROUTINGS[routing]) if routing else 4
    config["topics"]["splits"] = [split] if routing else None
    # a duplicate and a tiny seed, which the gates leave out
    source = config["splits"][split]["sources"][0]
    rows = [json.loads(line) for line in Path(source["path"]).read_text().splitlines()]
    rows += [{**rows[0], "id": "copy"}, {"id": "tiny", "text": "Jane Doe"}]
    seed_file = tmp_path / "web.jsonl"
    seed_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source["path"] = str(seed_file)
    before = estimate_split(config, split, tmp_path)
    assert before["basis"] == "estimated" and before["seeds"] == len(rows)
    layout, seeds = _run_seeds_and_topics(config, tmp_path, split, ROUTINGS.get(routing))
    topics = {}
    if routing:
        topics = {
            "topic_assignments": [tmp_path / p for p in layout.topic_files("assignments", [split])],
            "topic_decisions": tmp_path / layout.topic_decisions(),
        }
    report = prompts_stage(
        split,
        seeds,
        layout.prompts_settings(split),
        repo / "prompts",
        tmp_path / "prompts",
        tmp_path / "prompts.json",
        **topics,
    )
    planned = estimate_split(config, split, tmp_path)
    assert planned["basis"] == "counted"
    assert planned["seeds"] == len(rows) - 2
    assert planned["prompts"] == report["prompts"] > 0


def test_before_labelling_the_plan_follows_the_routes_the_overrides_give(
    default_config, repo, tmp_path
):
    from cosmoforge.ops.plan import estimate_split

    split = "web_samples_v1"
    config = default_config
    config["prompts_dir"] = str(repo / "prompts")
    config["topics"]["kmeans"]["k"] = 2
    overrides = config["topics"]["decisions"]["overrides"]
    overrides |= {"0": {"route": "all"}, "1": {"route": "all"}}
    web_templates = 4  # prompts/web_samples_v1: textbook x2, blogpost, wikihow
    # tmp_path: a run with no seed file yet, whatever a checkout's results/ holds
    assert estimate_split(config, split, tmp_path)["prompts"] == 10 * web_templates
    overrides["1"] = {"decision": "drop"}
    assert estimate_split(config, split, tmp_path)["prompts"] == 10 * web_templates // 2


@pytest.mark.parametrize("content", [b"not parquet at all", None])
def test_an_old_or_damaged_seed_file_leaves_the_estimate(default_config, tmp_path, content):
    """A previous run's seed file of another shape, or a damaged one: the plan estimates (the
    workflow remakes the file) instead of failing while Snakemake loads the workflow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cosmoforge.core.layout import Layout
    from cosmoforge.ops.plan import estimate_split

    config = default_config
    config["prompts_dir"] = str(Path(__file__).parents[2] / "prompts")
    expected = estimate_split(config, "wikihow", tmp_path)
    old = tmp_path / Layout(config).seeds("wikihow")
    old.parent.mkdir(parents=True)
    if content is None:
        pq.write_table(pa.table({"seed_id": ["wikihow:1"]}), old)  # no kind column
    else:
        old.write_bytes(content)
    assert estimate_split(config, "wikihow", tmp_path) == expected
    assert expected["basis"] == "estimated"
