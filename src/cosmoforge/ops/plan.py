"""The plan: from the config alone, what a run will do and roughly cost.

Per split: seeds (the smallest of `max_seeds`, `expected_seeds`, and the row count of a local
seed file), prompts per seed (the templates that apply to the split's seed kinds; OpenStax
units with reference text count twice), prompts, shards, expected completion tokens, and
GPU-hours at the configured throughput. Per rule: the number of Snakemake jobs. The same
estimates size the Slurm runtime of each generation job before its prompts exist.

Once a split's seed file exists (and, for a clustered split, its topic assignments and
decisions), its seeds and prompts are counted from them instead, the way the prompts stage
renders them: the seed gates, the duplicates, OpenStax units without reference text and every
cluster's route and drop are then in the figures.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cosmoforge.core.config import clustered_splits
from cosmoforge.core.contracts import ALL_ROUTES, KINDS, ROUTES
from cosmoforge.core.declare import BASE_DIR, RUN_CONFIG, Command, run_config
from cosmoforge.core.errors import ConfigError
from cosmoforge.core.io import iter_parquet
from cosmoforge.core.layout import Layout
from cosmoforge.stages.seeds import seed_cap, source_location
from cosmoforge.stages.templates import load_templates


def _file_rows(path: Path, file_format: str) -> int | None:
    if file_format == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (OSError, ValueError):  # unreadable here: the seeds rule reports it properly
            return None
    with open(path, "rb") as fh:
        lines = sum(1 for line in fh if line.strip())
    return lines - 1 if file_format == "csv" else lines


def _local_rows(source: dict, base_dir: Path) -> int | None:
    """Rows of a local seed file, or of a local `datasets` folder of parquet or JSON-lines data
    files (format hf; every data file in it counts, whatever split it holds, so the plan may
    overcount a folder of several splits); None for a hub dataset or anything unreadable."""
    where = source["dataset"] if source["format"] == "hf" else source["path"]
    path = Path(where) if Path(where).is_absolute() else base_dir / where
    try:
        path.stat()
    except OSError:  # missing, or a name the file system refuses (check names the key)
        return None
    if source["format"] != "hf":
        return _file_rows(path, source["format"]) if path.is_file() else None
    if not path.is_dir():
        return None
    files = [(f, "parquet") for f in sorted(path.rglob("*.parquet"))]
    files += [(f, "jsonl") for f in sorted(path.rglob("*.jsonl"))]
    rows = [_file_rows(f, kind) for f, kind in files]
    return sum(rows) if rows and None not in rows else None


def _route_templates(templates) -> dict:
    """Web templates a seed gets on each route ("all": every web template; a dropped cluster's
    seeds get none)."""
    web = [t.format for t in templates if "web" in t.kinds]
    return {**{route: web.count(route) for route in ROUTES}, ALL_ROUTES: len(web), None: 0}


def _routed_templates_per_seed(config: dict, templates) -> float:
    """Web templates a clustered seed gets, before the topics stage has run: the mean over the
    k clusters, each on the route and decision its `topics.decisions.overrides` entry gives,
    else on each of the three routes equally often and kept (routes are known only after
    labelling). With an override for every cluster it is exact for clusters of equal size."""
    per_route = _route_templates(templates)
    unknown = sum(per_route[route] for route in ROUTES) / len(ROUTES)
    overrides = config["topics"]["decisions"]["overrides"]
    k = config["topics"]["kmeans"]["k"]
    total = 0.0
    for cluster in range(k):
        entry = overrides.get(str(cluster), {})
        if entry.get("decision") == "drop":
            continue
        total += per_route[entry["route"]] if entry.get("route") else unknown
    return total / k


def _counted_split(config: dict, split: str, base_dir: Path, templates) -> tuple[int, int] | None:
    """(seeds, prompts) of a split counted from its seed file and, for a clustered split, its
    topic assignments and decisions, exactly as the prompts stage renders them; None while one
    of them does not exist yet, or cannot be read as the stages write it (an old or damaged
    file: the estimate stands, and the workflow remakes the file). Reads columns only: kind,
    and OpenStax `text` (a unit with reference text gets two prompts per template)."""
    from cosmoforge.core.errors import CosmoforgeError

    try:
        return _count_split(config, split, base_dir, templates)
    except (OSError, KeyError, ValueError, pa.ArrowException, CosmoforgeError):
        return None


def _count_split(config: dict, split: str, base_dir: Path, templates) -> tuple[int, int] | None:
    layout = Layout(config)
    seeds_path = base_dir / layout.seeds(split)
    routed = split in clustered_splits(config)
    assignments = [base_dir / p for p in layout.topic_files("assignments", [split])]
    decisions = base_dir / layout.topic_decisions()
    if not seeds_path.is_file() or (
        routed and not (decisions.is_file() and all(p.is_file() for p in assignments))
    ):
        return None
    per_kind = {kind: sum(1 for t in templates if kind in t.kinds) for kind in KINDS}
    names = pq.read_schema(seeds_path).names
    columns = ["kind"] + (["text"] if "text" in names else [])
    seeds = prompts = web_seeds = 0
    for batch in iter_parquet(seeds_path, 1 << 16, columns=columns):
        kinds = batch.column("kind").to_numpy(zero_copy_only=False)
        seeds += batch.num_rows
        for kind in set(kinds.tolist()):
            n = int((kinds == kind).sum())
            if kind == "web" and routed:
                web_seeds += n
                continue
            if kind == "openstax":
                with_text = pc.is_valid(batch.column("text").filter(pa.array(kinds == kind)))
                n += int(pc.sum(with_text).as_py() or 0)
            prompts += n * per_kind[kind]
    if routed:
        from cosmoforge.stages.topics import load_decisions

        per_route = _route_templates(templates)
        entries = {e["id"]: e for e in load_decisions(decisions)}
        clusters = pa.chunked_array(
            [pq.read_table(p, columns=["cluster"]).column(0) for p in assignments]
        )
        counted = 0
        for row in pc.value_counts(clusters).to_pylist():
            entry = entries.get(row["values"], {})
            counted += row["counts"]
            if entry.get("decision") == "keep":
                prompts += row["counts"] * per_route[entry.get("route")]
        if counted != web_seeds:  # stale assignments: the prompts stage would refuse them
            return None
    return seeds, prompts


def estimate_split(config: dict, split: str, base_dir: Path) -> dict:
    """A split's seeds, prompts, shards, tokens and GPU-hours: counted from its seed file (and
    topic decisions) once they exist, so the gates, duplicates and routes are in it; before,
    estimated from the sources and the config."""
    cfg = config["splits"][split]
    templates = load_templates(base_dir / config["prompts_dir"], split, cfg["templates"])
    counted = _counted_split(config, split, base_dir, templates)
    if counted is not None:
        return _split_figures(config, split, *counted, basis="counted")
    routed = split in clustered_splits(config)

    def templates_per_seed(kind: str) -> float:
        if kind == "web" and routed:
            return _routed_templates_per_seed(config, templates)
        return sum(1 for t in templates if kind in t.kinds) * (2 if kind == "openstax" else 1)

    seeds = 0
    prompts = 0
    unknown = []
    for source in cfg["sources"]:
        rows = _local_rows(source, base_dir)
        if rows is None:
            unknown.append(source_location(source))
            continue
        # OpenStax units count twice: with and without reference text.
        seeds += rows
        prompts += round(rows * templates_per_seed(source["kind"]))
    per_seed_all = {s["kind"]: templates_per_seed(s["kind"]) for s in cfg["sources"]}
    mean_per_seed = sum(per_seed_all.values()) / len(per_seed_all)
    cap = seed_cap(cfg["max_seeds"])
    if unknown:
        if cfg.get("expected_seeds") is None and cap is None:
            raise ConfigError(
                f"splits.{split}: cannot size {', '.join(unknown)} from the config; "
                "set expected_seeds (or max_seeds) for planning"
            )
        extra = cfg.get("expected_seeds") or cap
        seeds += extra
        prompts += round(extra * mean_per_seed)
    if cap is not None and seeds > cap:
        prompts = round(prompts * cap / seeds)
        seeds = cap
    return _split_figures(config, split, seeds, prompts, basis="estimated")


def _split_figures(config: dict, split: str, seeds: int, prompts: int, basis: str) -> dict:
    cfg = config["splits"][split]
    slurm = config["slurm"]
    sampling = {**config["sampling"], **cfg["sampling"]}
    per_prompt = slurm["expected_completion_tokens"] or sampling["max_tokens"]
    tokens = prompts * per_prompt
    return {
        "basis": basis,
        "seeds": seeds,
        "max_seeds": cfg["max_seeds"],
        "max_tokens": sampling["max_tokens"],
        "prompts": prompts,
        "shards": cfg["shards"],
        "prompts_per_shard": math.ceil(prompts / cfg["shards"]),
        "expected_completion_tokens": tokens,
        "gpu_hours": tokens / slurm["tokens_per_s_per_gpu"] / 3600,
    }


CPU_RATES = Path("resources") / "cpu_rates.json"


def cpu_core_hours(prompts: int, base_dir: Path) -> dict[str, float] | None:
    """Core-hours per CPU rule at the rates the scale rehearsal measured on this project's
    reference machine (resources/cpu_rates.json): per prompt, or per run for fixed-cost rules."""
    path = base_dir / CPU_RATES
    if not path.is_file():
        return None
    rates = json.loads(path.read_text(encoding="utf-8"))["rules"]
    return {
        rule: (rate.get("core_s_per_prompt", 0) * prompts + rate.get("core_s_per_run", 0)) / 3600
        for rule, rate in sorted(rates.items())
    }


def build_plan(config: dict, base_dir: str | Path = ".") -> dict:
    base_dir = Path(base_dir)
    layout = Layout(config)
    splits = {s: estimate_split(config, s, base_dir) for s in layout.splits}
    jobs = layout.job_counts(base_dir)
    prompts = sum(s["prompts"] for s in splits.values())
    cpu = cpu_core_hours(prompts, base_dir)
    if cpu is not None and not layout.topic_splits:
        cpu = {rule: h for rule, h in cpu.items() if not rule.startswith("topics_")}
    gpus = config["engine"]["tensor_parallel_size"]
    slurm = config["slurm"]
    slowest = max(splits.values(), key=lambda s: s["prompts_per_shard"])
    measured = _measured(config, splits, base_dir)
    return {
        "measured": measured,
        "calibrate_sweep": sweep_cost(config),
        "run_name": config["run_name"],
        "model": config["model"]["name"],
        "splits": splits,
        "jobs": jobs,
        "total_jobs": sum(jobs.values()),
        "cluster_jobs": layout.cluster_jobs(base_dir),
        "prompts": prompts,
        "cpu_core_hours": cpu,
        "expected_completion_tokens": sum(s["expected_completion_tokens"] for s in splits.values()),
        "gpu_hours": sum(s["gpu_hours"] for s in splits.values()),
        "gpus_per_generate_job": gpus,
        # the engine settings the generation jobs get (core.layout.quiet_engine)
        "engine": layout.generate_settings().engine,
        "tokens_per_s_per_gpu": slurm["tokens_per_s_per_gpu"],
        "engine_start_share": _start_share(config, splits),
        "longest_generate_job_minutes": generate_runtime_minutes(
            config,
            slowest["prompts_per_shard"],
            slowest["expected_completion_tokens"] / max(slowest["prompts"], 1),
        ),
    }


def sweep_cost(config: dict) -> dict:
    """What the calibration sweep will spend, before it runs: per point one engine start-up and
    the probe's tokens at the configured rate, on the point's GPUs; capped by the budget."""
    cal, slurm = config["calibrate"], config["slurm"]
    tp = config["engine"]["tensor_parallel_size"]
    tokens = cal["probe_prompts"] * (
        slurm["expected_completion_tokens"] or config["sampling"]["max_tokens"]
    )
    minutes = 0.0
    for point in cal["sweep"]:
        gpus = point.get("tensor_parallel_size", tp)
        minutes += gpus * (
            slurm["engine_start_minutes"] + tokens / (slurm["tokens_per_s_per_gpu"] * gpus) / 60
        )
    return {
        "points": len(cal["sweep"]),
        "probe_prompts": cal["probe_prompts"],
        "estimated_gpu_minutes": round(min(minutes, cal["sweep_budget_gpu_minutes"]), 1),
        "budget_gpu_minutes": cal["sweep_budget_gpu_minutes"],
    }


def _start_share(config: dict, splits: dict) -> float:
    """Engine start-up as a share of the generation jobs' expected time (start-up plus decoding
    at the configured rate, no margin): what many small shards cost."""
    slurm = config["slurm"]
    gpus = config["engine"]["tensor_parallel_size"]
    start_s = 60 * slurm["engine_start_minutes"] * sum(s["shards"] for s in splits.values())
    decode_s = sum(s["expected_completion_tokens"] for s in splits.values()) / (
        slurm["tokens_per_s_per_gpu"] * gpus
    )
    return round(start_s / (start_s + decode_s), 4) if start_s + decode_s else 0.0


def _measured(config: dict, splits: dict, base_dir: Path) -> dict | None:
    """The plan at the calibrated figures: tokens per prompt by split (the configured estimate
    for splits the probe did not reach) and the measured rate."""
    from cosmoforge.ops.calibrate import load_calibration

    path = calibration_path(config, base_dir)
    calibration = load_calibration(path)
    if calibration is None:
        return None
    rate = calibration["tokens_per_s_per_gpu"]
    tokens = 0.0
    for split, s in splits.items():
        per_prompt = (calibration["splits"].get(split) or {}).get("mean_completion_tokens")
        tokens += s["prompts"] * per_prompt if per_prompt else s["expected_completion_tokens"]
    return {
        "file": str(path),
        "best_point": calibration.get("engine_point"),
        "sweep_points": len(calibration.get("sweep", [])),
        "probe_prompts": calibration["prompts"],
        "tokens_per_s_per_gpu": rate,
        "engine_start_s": calibration["engine_start_s"],
        "expected_completion_tokens": round(tokens),
        "gpu_hours": tokens / rate / 3600,
    }


def generate_runtime_minutes(
    config: dict,
    shard_prompts: int,
    tokens_per_prompt: float,
    tokens_per_s_per_gpu: float | None = None,
) -> int:
    """Slurm time limit for one generation job: start-up plus expected decoding, with margin
    (at the calibrated rate when given, else the configured one)."""
    slurm = config["slurm"]
    gpus = config["engine"]["tensor_parallel_size"]
    rate = tokens_per_s_per_gpu or slurm["tokens_per_s_per_gpu"]
    decode_s = shard_prompts * tokens_per_prompt / (rate * gpus)
    minutes = slurm["engine_start_minutes"] + decode_s / 60 * slurm["runtime_margin"]
    return max(1, math.ceil(minutes))


def stop_signal_seconds(config: dict, runtime_minutes: int) -> int:
    """How long before its time limit a generation job asks for SIGUSR1 (sbatch --signal); 0
    for jobs too short for it. Slurm may send the signal up to a minute early, so a margin
    above a quarter of the limit would stop short jobs that would have finished; those rely
    on the SIGTERM at the limit, which they handle the same way."""
    margin = config["slurm"]["stop_signal_seconds"]
    return margin if margin and runtime_minutes * 60 >= 4 * margin else 0


def calibration_path(config: dict, base_dir: str | Path = ".") -> Path:
    return Path(base_dir) / Layout(config).calibration()


def measured_split_rate(config: dict, split: str, base_dir: str | Path = "."):
    """(tokens per prompt, tokens/s per GPU) for a split from the run's calibration file, or
    (None, None) without one."""
    from cosmoforge.ops.calibrate import load_calibration

    calibration = load_calibration(calibration_path(config, base_dir))
    if calibration is None:
        return None, None
    split_figures = calibration["splits"].get(split) or {}
    return split_figures.get("mean_completion_tokens"), calibration["tokens_per_s_per_gpu"]


def format_plan(plan: dict) -> str:
    lines = [
        f"plan for run '{plan['run_name']}' with {plan['model']}",
        "",
        f"{'split':<16}{'seeds':>10}{'prompts':>12}{'shards':>8}{'per shard':>11}"
        f"{'exp. tokens':>16}{'GPU-hours':>11}",
    ]
    for split, s in plan["splits"].items():
        lines.append(
            f"{split:<16}{s['seeds']:>10,}{s['prompts']:>12,}{s['shards']:>8,}"
            f"{s['prompts_per_shard']:>11,}{s['expected_completion_tokens']:>16,}"
            f"{s['gpu_hours']:>11,.1f}"
        )
    counted = [split for split, s in plan["splits"].items() if s["basis"] == "counted"]
    lines += [
        f"{'total':<16}{'':>10}{plan['prompts']:>12,}{'':>8}{'':>11}"
        f"{plan['expected_completion_tokens']:>16,}{plan['gpu_hours']:>11,.1f}",
        "seeds and prompts "
        + (
            f"counted from the run's seed files and topic decisions for {', '.join(counted)}; "
            "the other splits' estimated from their sources and the config"
            if counted
            else "estimated from the sources and the config (counted once the seeds exist)"
        ),
        "",
        engine_line(plan["engine"]),
        "caps: "
        + ", ".join(
            f"{split} max_seeds {s['max_seeds']}, max_tokens {s['max_tokens']}"
            for split, s in plan["splits"].items()
        ),
        "",
        f"GPU-hours at {plan['tokens_per_s_per_gpu']:,} completion tokens/s per GPU, "
        f"{plan['gpus_per_generate_job']} GPU(s) per generation job; longest generation job "
        f"~{plan['longest_generate_job_minutes']:,} min (its Slurm time limit); engine "
        f"start-up (slurm.engine_start_minutes) is ~{plan['engine_start_share']:.1%} of the "
        "generation jobs' time.",
        "",
    ]
    lines += _measured_lines(plan)
    lines += ["jobs per rule:"]
    lines += [f"  {rule:<22}{count:>8,}" for rule, count in plan["jobs"].items() if count]
    lines.append(f"  {'total':<22}{plan['total_jobs']:>8,}")
    lines.append(
        f"  {'submitted on Slurm':<22}{plan['cluster_jobs']:>8,}  (one job per shard for "
        "the dedup filter, decontamination and release; local rules run on the submitting node)"
    )
    return "\n".join(lines)


def _measured_lines(plan: dict) -> list[str]:
    """The plan's lines on what was measured: the engine on this node (or that it was not) and
    the CPU side's rates."""
    lines = []
    measured = plan["measured"]
    if measured:
        lines += [
            f"Measured ({measured['file']}, {measured['probe_prompts']} probe prompts): "
            f"{measured['tokens_per_s_per_gpu']:,} completion tokens/s per GPU, engine start-up "
            f"{measured['engine_start_s']:.0f} s: {measured['expected_completion_tokens']:,} "
            f"expected tokens, {measured['gpu_hours']:,.1f} GPU-hours (configured: "
            f"{plan['gpu_hours']:,.1f}). Generation time limits use the measured figures.",
            "",
        ]
        if measured.get("best_point"):
            lines[-1:-1] = [
                f"  the fastest of {measured['sweep_points']} sweep points: "
                f"{json.dumps(measured['best_point'], sort_keys=True)}"
            ]
    else:
        lines += [
            "Not calibrated: `make calibrate` measures this node and model on the run's own "
            "prompts; the plan and the time limits then use the measurement.",
            "",
        ]
    sweep = plan["calibrate_sweep"]
    if sweep["points"]:
        lines += [
            f"Calibration sweep: {sweep['points']} points (calibrate.sweep), each a start-up and "
            f"a {sweep['probe_prompts']}-prompt probe: about {sweep['estimated_gpu_minutes']:,.0f} "
            f"GPU-minutes, at most {sweep['budget_gpu_minutes']:,.0f} (sweep_budget_gpu_minutes).",
            "",
        ]
    if plan["cpu_core_hours"]:
        cpu = plan["cpu_core_hours"]
        lines += [
            f"CPU side: {sum(cpu.values()):,.1f} core-hours at the rates measured by "
            "measure/scale_rehearsal.py (resources/cpu_rates.json; rerun it on your nodes):",
            "  " + ", ".join(f"{rule} {hours:,.1f}" for rule, hours in cpu.items()),
            "",
        ]
    return lines


def engine_line(engine: dict) -> str:
    """The generation jobs' engine settings in one line (every key that reaches vLLM)."""
    keys = (
        "tensor_parallel_size",
        "dtype",
        "max_model_len",
        "enforce_eager",
        "gpu_memory_utilization",
        "enable_prefix_caching",
        "max_num_seqs",
        "max_num_batched_tokens",
    )
    parts = [f"{key} {engine[key]}" for key in keys]
    parts.append(f"extra_args {json.dumps(engine['extra_args'], sort_keys=True)}")
    parts.append(f"env {json.dumps(sorted(engine['env']))}")
    return f"engine: {engine['backend']}, " + ", ".join(parts)


def dry_run_lines(config: dict, base_dir: str | Path = ".") -> list[str]:
    """What a dry run prints before its jobs: per split the seeds, cap, prompts, shards and
    max_tokens its jobs get, and the generation engine's settings."""
    try:
        plan = build_plan(config, base_dir)
    except ConfigError as exc:
        return [f"plan: not available ({exc})"]
    lines = [f"plan for run '{plan['run_name']}' (cosmoforge plan prints the whole of it):"]
    for split, s in plan["splits"].items():
        lines.append(
            f"  {split}: {s['seeds']:,} seeds (max_seeds {s['max_seeds']}) -> "
            f"{s['prompts']:,} prompts in {s['shards']} shard(s), max_tokens {s['max_tokens']}"
            + (
                f" -- more shards than seeds: the prompts job will refuse it; set "
                f"splits.{split}.shards to at most {s['seeds']}"
                if s["seeds"] < s["shards"]
                else ""
            )
        )
    lines.append("  " + engine_line(plan["engine"]))
    return lines


def plan_json(plan: dict) -> str:
    return json.dumps(plan, indent=2, sort_keys=True)


# --- command line ------------------------------------------------------------------------------


def compare_models(config: dict, overlays: list[Path], base_dir: Path) -> list[dict]:
    """GPU-hours of the same prompts with the run's own model and with each overlay (a model
    preset, config/presets/models/) applied on top of the run's config files: what the
    generator and its layout change, and nothing else."""
    from cosmoforge.core.config import deep_merge, read_config_file, validate_config

    def figures(name: str, cfg: dict, prompts: int, tokens: int) -> dict:
        rate = cfg["slurm"]["tokens_per_s_per_gpu"]
        return {
            "preset": name,
            "model": cfg["model"]["name"],
            "revision": cfg["model"]["revision"],
            "gpus_per_job": cfg["engine"]["tensor_parallel_size"],
            "tokens_per_s_per_gpu": rate,
            "prompts": prompts,
            "gpu_hours": tokens / rate / 3600,
        }

    base_plan = build_plan(config, base_dir)
    prompts, tokens = base_plan["prompts"], base_plan["expected_completion_tokens"]
    rows = [figures("this config", config, prompts, tokens)]
    for overlay in overlays:
        merged = validate_config(
            deep_merge(copy.deepcopy(config), read_config_file(overlay)), str(overlay)
        )
        rows.append(figures(overlay.stem, merged, prompts, tokens))
    for row in rows:
        row["ratio"] = (
            round(row["gpu_hours"] / rows[0]["gpu_hours"], 3) if rows[0]["gpu_hours"] else None
        )
    return rows


def format_comparison(rows: list[dict]) -> str:
    lines = [
        "",
        f"the same {rows[0]['prompts']:,} prompts with each generator (expected tokens as above):",
        f"{'preset':<28}{'model':<44}{'GPUs/job':>9}{'tok/s/GPU':>11}{'GPU-hours':>12}{'ratio':>7}",
    ]
    for row in rows:
        lines.append(
            f"{row['preset']:<28}{row['model']:<44}{row['gpus_per_job']:>9}"
            f"{row['tokens_per_s_per_gpu']:>11,}{row['gpu_hours']:>12,.0f}{row['ratio']:>7.2f}"
            + ("" if row["revision"] else "  (revision not pinned)")
        )
    return "\n".join(lines)


def _plan_command(args) -> None:
    config = run_config(args)
    plan = build_plan(config, args.base_dir)
    if args.json:
        if args.compare:
            plan["compare"] = compare_models(config, args.compare, Path(args.base_dir))
        print(plan_json(plan))
        return
    print(format_plan(plan))
    if args.compare:
        print(format_comparison(compare_models(config, args.compare, Path(args.base_dir))))


COMMANDS = (
    Command(
        "plan",
        "jobs, prompts, tokens and GPU-hours of a config",
        _plan_command,
        {
            **RUN_CONFIG,
            **BASE_DIR,
            "--json": {"action": "store_true"},
            "--compare": {
                "nargs": "*",
                "type": Path,
                "default": [],
                "metavar": "PRESET",
                "help": "model presets (config/presets/models/*.yaml) to price the same "
                "prompts with, each applied on top of the config",
            },
        },
    ),
)
