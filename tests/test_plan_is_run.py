"""What `cosmoforge plan` describes is what Snakemake runs, for every shipped config and for a
user's own file: the settings each seeds, prompts and generate job of a dry run gets (seeds per
split, caps, shards, max_tokens, engine settings, GPUs) agree with the plan of the same
arguments, and neither inherits the CPU demo's values.
"""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cosmoforge.cli import main
from cosmoforge.core.contracts import KINDS, target_words
from tests.helpers import REPO, dry_run_jobs, flag, workdir

pytestmark = pytest.mark.dryrun
PRESET = REPO / "config" / "presets" / "cosmopedia.yaml"
# Only the seed paths and the model: everything else is the user's to leave out.
USER_FILE = """\
run_name: my-own
splits:
  web_samples_v1:
    sources:
      - {name: crawl, kind: web, format: jsonl, path: resources/seeds/web_samples_v1.jsonl}
  stanford:
    sources:
      - {name: outlines, kind: stanford, format: jsonl, path: resources/seeds/stanford_units.jsonl}
  openstax:
    sources:
      - {name: books, kind: openstax, format: jsonl, path: resources/seeds/openstax_units.jsonl}
model:
  name: HuggingFaceTB/SmolLM2-135M-Instruct
  path: resources/models/smollm2-135m-instruct
"""


def plan_of(capsys, work, *args: str) -> dict:
    capsys.readouterr()
    assert main(["plan", "--json", "--base-dir", str(work), *args]) == 0
    return json.loads(capsys.readouterr().out)


def by_rule(jobs: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for job in jobs:
        grouped.setdefault(job["rule"], []).append(job)
    return grouped


def assert_jobs_match_plan(jobs: list[dict], plan: dict) -> dict[str, list[dict]]:
    rules = by_rule(jobs)
    seeds = {flag(j, "--split"): flag(j, "--settings") for j in rules["seeds"]}
    prompts = {flag(j, "--split"): flag(j, "--settings") for j in rules["prompts"]}
    generate = Counter(j["wildcards"]["split"] for j in rules["generate"])
    assert set(seeds) == set(prompts) == set(generate) == set(plan["splits"])
    for split, planned in plan["splits"].items():
        assert seeds[split]["max_seeds"] == planned["max_seeds"], split
        assert prompts[split]["shards"] == planned["shards"] == generate[split], split
        assert prompts[split]["target_words"] == target_words(planned["max_tokens"]), split
    for job in rules["generate"]:
        settings = flag(job, "--settings")
        split = job["wildcards"]["split"]
        assert settings["sampling"]["max_tokens"] == plan["splits"][split]["max_tokens"]
        assert settings["engine"] == plan["engine"]
        gpus = plan["gpus_per_generate_job"]
        assert f"gpu={gpus}," in job["resources"], job["resources"]
    return rules


def assert_no_cpu_engine_settings(engine: dict) -> None:
    assert engine["env"] == {} and engine["extra_args"] == {}
    assert engine["dtype"] != "float32" and engine["enforce_eager"] is False


def test_the_default_plans_and_runs_the_demo(repo, tmp_path, capsys):
    work = workdir(tmp_path)
    jobs, printed = dry_run_jobs(work)
    plan = plan_of(capsys, work)
    rules = assert_jobs_match_plan(jobs, plan)
    # No file given: the embedded default, caps and CPU engine settings included.
    assert plan["splits"]["stanford"]["max_seeds"] == 3 and plan["prompts"] == 115
    assert "VLLM_CPU_KVCACHE_SPACE" in flag(rules["generate"][0], "--settings")["engine"]["env"]
    # The dry run says first what the plan says, line for line.
    assert (
        "  stanford: 3 seeds (max_seeds 3) -> 12 prompts in 1 shard(s), max_tokens 192" in printed
    )


def write_preset_exports(work) -> list[str]:
    """Small parquet files in the real layout at the preset's local seed paths (the hub
    sources are not read by a dry run); returns their config keys."""
    preset = yaml.safe_load(PRESET.read_text())
    written = []
    for split, cfg in preset["splits"].items():
        for i, source in enumerate(cfg["sources"]):
            if source["format"] != "parquet":
                continue
            required, optional = KINDS[source["kind"]]
            columns = [source.get("fields", {}).get(f, f) for f in (*required, *optional)]
            rows = {c: [f"{c} {n}" for n in range(4)] for c in columns}
            path = work / source["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(rows), path)
            written.append(f"splits.{split}.sources[{i}]")
    return written


def test_the_unmodified_preset_runs_what_its_plan_says(repo, tmp_path, capsys):
    work = workdir(tmp_path, link=("config", "prompts", "profiles"))
    (work / "resources").mkdir()
    for name in ("benchmarks", "cpu_rates.json"):
        (work / "resources" / name).symlink_to(repo / "resources" / name)
    assert len(write_preset_exports(work)) == 5
    jobs, printed = dry_run_jobs(work, "--configfile", str(PRESET))
    plan = plan_of(capsys, work, "--configfile", str(PRESET))
    rules = assert_jobs_match_plan(jobs, plan)
    # The preset's own values, not the demo's: every seed, Mixtral's sampling, GPU settings.
    assert plan["splits"]["stanford"]["max_seeds"] == "all"
    assert plan["splits"]["web_samples_v1"]["max_seeds"] == 9_300_000
    assert {s["max_tokens"] for s in plan["splits"].values()} == {2500}
    assert sum(plan["splits"][s]["shards"] for s in plan["splits"]) == len(rules["generate"])
    engine = flag(rules["generate"][0], "--settings")["engine"]
    assert_no_cpu_engine_settings(engine)
    assert engine["tensor_parallel_size"] == 2 and engine["max_num_batched_tokens"] == 16384
    assert "convert_model" not in rules  # a hub model is not converted
    finish = rules["finish_shard_stanford"][0]
    assert flag(finish, "--min-token-length") == "150"
    label = flag(rules["topics_label"][0], "--settings")
    assert label["k"] == 145 and label["engine"] == engine
    assert "max_seeds all" in printed and "tensor_parallel_size 2" in printed


def test_a_users_own_file_gets_the_schema_defaults_not_the_demos(repo, tmp_path, capsys):
    work = workdir(tmp_path)
    (work / "my.yaml").write_text(USER_FILE)
    jobs, _ = dry_run_jobs(work, "--configfile", "my.yaml")
    plan = plan_of(capsys, work, "--configfile", str(work / "my.yaml"))
    rules = assert_jobs_match_plan(jobs, plan)
    assert set(plan["splits"]) == {"web_samples_v1", "stanford", "openstax"}
    # The demo caps stanford and openstax at 3 seeds and asks for 192 tokens (~110 words).
    assert plan["splits"]["stanford"]["max_seeds"] == "all"
    assert plan["splits"]["stanford"]["seeds"] == 5  # every row of the file (the demo keeps 3)
    prompts = {flag(j, "--split"): flag(j, "--settings") for j in rules["prompts"]}
    assert prompts["stanford"]["target_words"] == 1500
    assert flag(rules["finish_shard_stanford"][0], "--min-token-length") == "150"
    assert flag(rules["topics_label"][0], "--settings")["k"] == 145
    assert_no_cpu_engine_settings(flag(rules["generate"][0], "--settings")["engine"])


def test_overlays_merge_in_order_and_config_entries_win(repo, tmp_path, capsys):
    work = workdir(tmp_path)
    (work / "first.yaml").write_text(
        "sampling: {max_tokens: 300}\nsplits: {wikihow: {shards: 2}}\n"
    )
    (work / "second.yaml").write_text("sampling: {max_tokens: 400}\n")
    args = ["--configfile", "config/config.yaml", "first.yaml", "second.yaml"]
    args += ["--config", "run_name=layered"]
    jobs, _ = dry_run_jobs(work, *args)
    plan = plan_of(
        capsys, work, *[a if a.startswith("--") or "=" in a else str(work / a) for a in args]
    )
    assert plan["run_name"] == "layered"
    assert (
        plan["splits"]["wikihow"]["shards"] == 2 and plan["splits"]["wikihow"]["max_tokens"] == 400
    )
    assert plan["splits"]["stanford"]["max_seeds"] == 3  # the demo, named first, is the base
    assert_jobs_match_plan(jobs, plan)


def test_the_fake_engine_converts_no_model(repo, tmp_path):
    work = workdir(tmp_path)
    jobs, _ = dry_run_jobs(work, "--config", "engine={backend: fake}")
    rules = by_rule(jobs)
    assert "convert_model" not in rules
    assert rules["generate"] and all(len(j["input"]) == 1 for j in rules["generate"])
    assert all(j["input"][0].startswith("results/") for j in rules["generate"])


def test_the_run_wide_jobs_command_lines_do_not_grow_with_the_shards(repo, tmp_path):
    """The jobs that read every shard's files (dedup report, contamination report, ledger, card)
    find them by the run's paths: their command lines stay the same length at 1 shard a split
    or 4 (a path per shard of the preset's 773 would come near Linux's 128 KB limit on one
    argument)."""
    lengths = {}
    for shards in (1, 4):
        work = workdir(tmp_path / f"s{shards}")
        overlay = work / "shards.yaml"
        overlay.write_text(yaml.safe_dump({"splits": {"stories": {"shards": shards}}}))
        jobs, _ = dry_run_jobs(work, "--configfile", "config/config.yaml", str(overlay))
        once = [r for r, n in Counter(j["rule"] for j in jobs).items() if n == 1]
        lengths[shards] = {j["rule"]: len(j["shell"]) for j in jobs if j["rule"] in once}
    run_wide = {"dedup_report", "contamination_report", "ledger", "card"}
    assert run_wide <= set(lengths[1])
    grown = {r for r in lengths[1] if lengths[1][r] != lengths[4].get(r)}
    # A shard's own job names its shard, rank and the number of ranks: not run-wide.
    assert grown and all(r.startswith("finish_shard_") for r in grown)


@pytest.mark.parametrize("model", ["qwen3-30b-a3b-instruct", "mixtral-8x7b-fp8"])
def test_a_model_preset_over_the_preset_runs_what_its_plan_says(repo, tmp_path, capsys, model):
    """config/presets/models/*.yaml on top of the Cosmopedia preset: the dry run's jobs are the
    plan's, with the overlay's generator and layout and the preset's everything else."""
    work = workdir(tmp_path, link=("config", "prompts", "profiles"))
    (work / "resources").mkdir()
    for name in ("benchmarks", "cpu_rates.json"):
        (work / "resources" / name).symlink_to(repo / "resources" / name)
    write_preset_exports(work)
    overlay = repo / "config" / "presets" / "models" / f"{model}.yaml"
    args = ("--configfile", str(PRESET), str(overlay))
    jobs, printed = dry_run_jobs(work, *args)
    plan = plan_of(capsys, work, *args, "--compare", str(overlay))
    rules = assert_jobs_match_plan(jobs, plan)
    settings = flag(rules["generate"][0], "--settings")
    assert settings["model"]["name"] == yaml.safe_load(overlay.read_text())["model"]["name"]
    assert settings["engine"]["tensor_parallel_size"] == 1
    assert {s["max_tokens"] for s in plan["splits"].values()} == {2500}  # the preset's sampling
    this, other = plan["compare"]
    assert this["prompts"] == other["prompts"] == plan["prompts"]
    assert other["ratio"] == round(this["tokens_per_s_per_gpu"] / other["tokens_per_s_per_gpu"], 3)
    assert "tensor_parallel_size 1" in printed
