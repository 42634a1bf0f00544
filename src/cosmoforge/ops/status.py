"""Progress of a run, from its files alone: safe to call while Snakemake runs, locally or on Slurm.

A generation shard is *done* when its parquet (or its release file) exists, *running* when its
checkpoint parts changed within the last `active_s` seconds, *interrupted* when it has older
parts (a killed job waiting for its rerun), and *pending* otherwise. Rows and completion tokens
come from the shard statistics of finished shards and from the parquet footers (and one int
column) of checkpoint parts, so a run laid out like the Cosmopedia preset is read in about a second.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pyarrow.parquet as pq

from cosmoforge.core.declare import RUN_CONFIG, Command, config_source, run_config
from cosmoforge.core.layout import Layout
from cosmoforge.ops.plan import estimate_split
from cosmoforge.stages.generate import parts_dir

STATES = ("done", "running", "interrupted", "pending")


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _parts(folder: Path) -> list[tuple[float, int, int]]:
    """(mtime, rows, completion tokens) of each readable checkpoint part."""
    out = []
    for part in sorted(folder.glob("part-*.parquet")):
        try:
            mtime = part.stat().st_mtime
            table = pq.read_table(part, columns=["completion_tokens"])
        except (OSError, ValueError):  # being renamed into place, or damaged: the job decides
            continue
        out.append((mtime, table.num_rows, int(table.column(0).to_numpy().sum())))
    return out


def shard_prompt_counts(layout: Layout, base: Path, split: str, planned: int) -> list[int]:
    """Prompts per shard: the prompts stage's report once it exists, else the plan's estimate."""
    report = _json(base / layout.prompt_report(split))
    shards = layout.shards(split)
    if report and "per_shard" in report:
        return [int(report["per_shard"].get(str(int(s)), 0)) for s in shards]
    return [planned] * len(shards)


def run_status(
    config: dict,
    base_dir: str | Path = ".",
    now: float | None = None,
    active_s: float = 900,
    window_s: float = 600,
) -> dict:
    base = Path(base_dir)
    now = time.time() if now is None else now
    layout = Layout(config)
    gpus = config["engine"]["tensor_parallel_size"]
    configured_rate = config["slurm"]["tokens_per_s_per_gpu"]
    splits = {}
    recent_tokens = 0
    for split in layout.splits:
        plan = estimate_split(config, split, base)
        counts = shard_prompt_counts(layout, base, split, plan["prompts_per_shard"])
        entry = {state: 0 for state in STATES}
        entry.update(
            shards=len(counts),
            prompts=sum(counts),
            rows=0,
            completion_tokens=0,
            gpu_seconds=0.0,
            planned_gpu_hours=plan["gpu_hours"],
            cache_queries=0,
            cache_hits=0,
            engine_start_s=0.0,
            engine_restarts=0,
            engine_lost_s=0.0,
            job_s=0.0,
        )
        for shard, prompts in zip(layout.shards(split), counts, strict=True):
            output = base / layout.generated(split, shard)
            # A shard whose release file exists is done even if its generated file was deleted
            # since: Snakemake does not rebuild a missing intermediate whose products exist,
            # and status says what Snakemake will do.
            if output.is_file() or (base / layout.release_file(split, shard)).is_file():
                _add_done_shard(entry, output, prompts, gpus)
                continue
            parts = _parts(base / parts_dir(Path(layout.generated(split, shard))))
            if not parts:
                entry["pending"] += 1
                continue
            latest = max(p[0] for p in parts)
            entry["running" if now - latest <= active_s else "interrupted"] += 1
            entry["rows"] += sum(p[1] for p in parts)
            entry["completion_tokens"] += sum(p[2] for p in parts)
            if now - latest <= active_s:
                entry["gpu_seconds"] += (now - min(p[0] for p in parts)) * gpus
            recent_tokens += sum(p[2] for p in parts if now - p[0] <= window_s)
        splits[split] = entry
    return _totals(splits, recent_tokens / window_s, configured_rate, config)


def _add_done_shard(entry: dict, output: Path, prompts: int, gpus: int) -> None:
    """A finished shard's figures, from its generation statistics where they are kept."""
    entry["done"] += 1
    stats = _json(output.with_name(output.stem + ".stats.json")) or {}
    entry["rows"] += stats.get("rows", prompts)
    entry["completion_tokens"] += stats.get(
        "total_completion_tokens", stats.get("completion_tokens", 0)
    )
    seconds = stats.get("engine_start_s", 0) + stats.get("generate_s", 0)
    entry["gpu_seconds"] += stats.get("gpu_hours", seconds * gpus / 3600) * 3600
    entry["engine_start_s"] += stats.get("engine_start_s", 0)
    entry["job_s"] += seconds
    entry["cache_queries"] += stats.get("prefix_cache_queries", 0)
    entry["cache_hits"] += stats.get("prefix_cache_hits", 0)
    entry["engine_restarts"] += stats.get("engine_restarts", 0)
    entry["engine_lost_s"] += stats.get("engine_lost_s", 0.0)


def _totals(splits: dict, tokens_per_s: float, configured_rate: float, config: dict) -> dict:
    rows = sum(s["rows"] for s in splits.values())
    prompts = sum(s["prompts"] for s in splits.values())
    tokens = sum(s["completion_tokens"] for s in splits.values())
    expected = config["slurm"]["expected_completion_tokens"] or config["sampling"]["max_tokens"]
    per_row = tokens / rows if rows else expected
    remaining_tokens = (prompts - rows) * per_row
    spent = sum(s["gpu_seconds"] for s in splits.values()) / 3600
    # Throughput per GPU measured on this run's work so far (checkpointed rows of interrupted
    # shards count as tokens without GPU time, so it leans high); the configured rate until then.
    measured_rate = tokens / (spent * 3600) if spent > 0 and tokens else None
    rate = measured_rate or configured_rate
    queries = sum(s["cache_queries"] for s in splits.values())
    hits = sum(s["cache_hits"] for s in splits.values())
    job_s = sum(s["job_s"] for s in splits.values())
    start_s = sum(s["engine_start_s"] for s in splits.values())
    restarts = sum(s.pop("engine_restarts") for s in splits.values())
    lost_s = sum(s.pop("engine_lost_s") for s in splits.values())
    for entry in splits.values():
        entry["gpu_hours"] = round(entry.pop("gpu_seconds") / 3600, 4)
        q, h = entry.pop("cache_queries"), entry.pop("cache_hits")
        entry["prefix_cache_hit_rate"] = round(h / q, 4) if q else None
        del entry["engine_start_s"], entry["job_s"]
    return {
        "splits": splits,
        "prompts": prompts,
        "rows": rows,
        "completion_tokens": tokens,
        "tokens_per_s_now": round(tokens_per_s, 1),
        "eta_s": round(remaining_tokens / tokens_per_s) if tokens_per_s > 0 else None,
        "gpu_hours_spent": round(spent, 3),
        "gpu_hours_projected": round(spent + remaining_tokens / rate / 3600, 3),
        "gpu_hours_planned": round(sum(s["planned_gpu_hours"] for s in splits.values()), 3),
        "tokens_per_s_per_gpu_measured": round(measured_rate, 1) if measured_rate else None,
        "prefix_cache_hit_rate": round(hits / queries, 4) if queries else None,
        # Of the finished generation jobs' time, the share spent starting the engine.
        "engine_start_share": round(start_s / job_s, 4) if job_s else None,
        # Engines started again inside finished jobs after they died or froze, and the seconds
        # those jobs lost to it (see stages/generate/supervise.py).
        "engine_restarts": restarts,
        "engine_lost_s": round(lost_s, 1),
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def format_status(status: dict) -> str:
    lines = [
        f"{'split':<16}{'done':>6}{'run':>5}{'int':>5}{'pend':>6}{'rows':>14}{'of':>14}"
        f"{'tokens':>15}{'GPU-h':>9}"
    ]
    for split, s in status["splits"].items():
        lines.append(
            f"{split:<16}{s['done']:>6}{s['running']:>5}{s['interrupted']:>5}{s['pending']:>6}"
            f"{s['rows']:>14,}{s['prompts']:>14,}{s['completion_tokens']:>15,}"
            f"{s['gpu_hours']:>9.2f}"
        )
    done = status["rows"] / status["prompts"] if status["prompts"] else 0
    measured = status["tokens_per_s_per_gpu_measured"]
    lines += [
        "",
        f"rows {status['rows']:,} of {status['prompts']:,} ({done:.1%}); "
        f"{status['tokens_per_s_now']:,.0f} completion tok/s now (last 10 min); "
        f"ETA {_duration(status['eta_s'])}",
        f"GPU-hours: {status['gpu_hours_spent']:,.2f} spent, "
        f"{status['gpu_hours_projected']:,.2f} projected, {status['gpu_hours_planned']:,.2f} "
        f"planned; tok/s per GPU measured: {measured if measured else '-'}",
        f"prefix-cache hit rate {_share(status['prefix_cache_hit_rate'])} of prompt tokens; "
        f"engine start-up {_share(status['engine_start_share'])} of finished jobs' time; "
        f"engine restarts {status['engine_restarts']} ({status['engine_lost_s']:,.0f} s lost)",
        "(int: interrupted shards, with checkpoint parts but no recent progress: rerun resumes "
        "them)",
    ]
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------


def _status_command(args) -> None:
    config = run_config(args)
    while True:
        status = run_status(config, args.base_dir)
        text = json.dumps(status, indent=2) if args.json else format_status(status)
        if not args.watch:
            print(text)
            return
        # Redraw in place: cursor home, clear the screen.
        print(
            "\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + config_source(args) + "\n" + text,
            flush=True,
        )
        time.sleep(args.watch)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


COMMANDS = (
    Command(
        "status",
        "progress of a run from its files: shards, rows, tok/s, ETA, GPU-hours",
        _status_command,
        {
            **RUN_CONFIG,
            "--base-dir": {"default": ".", "type": Path, "help": "where results/ is"},
            "--json": {"action": "store_true"},
            "--watch": {
                "type": positive_seconds,
                "metavar": "SECONDS",
                "help": "refresh every SECONDS (more than 0)",
            },
        },
    ),
)
