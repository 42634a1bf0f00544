"""Calibrate before launch: a short probe of the run's own prompts on the run's own node and model.

A few hundred prompts are drawn from the run's prompt files (the same number from each split,
spread over its templates, deterministically) and generated through the same code as a shard
(`generate_shard`, so the same engine settings, chat template and seeds). The probe measures
engine start-up, completion tokens per second per GPU, mean completion tokens per prompt by
split and the share of texts cut at `max_tokens`, and writes `results/<run>/calibration.json`.
When that file exists, `cosmoforge plan` and the generation jobs' Slurm time limits use the
measured figures instead of `slurm.tokens_per_s_per_gpu` and `expected_completion_tokens`.

Throughput is measured at the probe's batch (all its prompts at once), so the engine is busier
in a full shard; the measured rate is then a floor, which is the safe side for time limits.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.config import schema_for
from cosmoforge.core.declare import Command, config_value_arg, json_arg, path_arg
from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.core.io import stable_hash, write_json
from cosmoforge.core.settings import GenerationSettings
from cosmoforge.core.tables import PROMPT_SCHEMA
from cosmoforge.stages.generate import generate_shard


def prompts_by_template(files: list[str | Path], enough, seed: int, purpose: str) -> dict:
    """A split's prompts by template, each template's in a seeded order; its shard files are
    read in order only until `enough(by_template)` holds."""
    by_template: dict[str, list[dict]] = defaultdict(list)
    for path in files:
        for row in pq.read_table(path).to_pylist():
            by_template[row["template_id"]].append(row)
        if enough(by_template):
            break
    for rows in by_template.values():
        rows.sort(key=lambda r: stable_hash(seed, purpose, r["sample_id"]))
    return by_template


def generate_probe(
    sample: pa.Table, settings: GenerationSettings, output: Path, engine_factory=None
) -> dict:
    """A probe's prompts through the generation code of a shard; its stats."""
    with tempfile.TemporaryDirectory(prefix="cosmoforge-probe-") as scratch:
        probe = Path(scratch) / "probe.parquet"
        pq.write_table(sample, probe)
        return generate_shard(probe, output, settings, engine_factory=engine_factory)


def sample_prompts(prompt_files: dict[str, list[str | Path]], total: int, seed: int) -> pa.Table:
    """`total` prompts, as equal a number per split as there are, round-robin over each split's
    templates, each template's prompts in a seeded order. Reads only the shard files it needs."""
    per_split = max(1, total // max(len(prompt_files), 1))
    chosen = []
    for _, files in sorted(prompt_files.items()):
        by_template = prompts_by_template(
            files, lambda b: sum(map(len, b.values())) >= 4 * per_split, seed, "calibrate"
        )
        queues = [by_template[t] for t in sorted(by_template)]
        taken = 0
        while taken < per_split and any(queues):
            for queue in queues:
                if queue and taken < per_split:
                    chosen.append(queue.pop(0))
                    taken += 1
    if not chosen:
        raise CosmoforgeError("calibrate: the run's prompt files hold no prompts")
    return pa.Table.from_pylist(chosen, schema=PROMPT_SCHEMA)


def calibrate(
    prompt_files: dict[str, list[str | Path]],
    settings: GenerationSettings | dict,
    output: str | Path,
    prompts: int = 256,
    engine_factory=None,
) -> dict:
    """Run the probe and write the calibration file (`settings` as for a generation job)."""
    settings = GenerationSettings.of(settings)
    sample = sample_prompts(prompt_files, prompts, settings.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cosmoforge-calibrate-") as scratch:
        generated = Path(scratch) / "generated.parquet"
        stats = generate_probe(sample, settings, generated, engine_factory)
        rows = pq.read_table(
            generated, columns=["split", "completion_tokens", "finish_reason", "error"]
        ).to_pylist()
    gpus = settings.engine.get("tensor_parallel_size", 1)
    per_split: dict[str, dict] = {}
    for split in sorted({r["split"] for r in rows}):
        mine = [r for r in rows if r["split"] == split and not r["error"]]
        per_split[split] = {
            "prompts": len(mine),
            "mean_completion_tokens": round(
                sum(r["completion_tokens"] for r in mine) / max(len(mine), 1), 1
            ),
            "length_rate": round(
                sum(r["finish_reason"] == "length" for r in mine) / max(len(mine), 1), 4
            ),
        }
    tokens = stats["completion_tokens"]
    result = {
        "prompts": len(rows),
        "engine_start_s": stats["engine_start_s"],
        "generate_s": stats["generate_s"],
        "completion_tokens": tokens,
        "tokens_per_s_per_gpu": round(tokens / stats["generate_s"] / gpus, 2)
        if stats["generate_s"]
        else None,
        "gpus": gpus,
        "splits": per_split,
        "model": settings.model["name"],
        "engine": {k: settings.engine.get(k) for k in ("backend", "dtype", "max_model_len")},
        "max_tokens": settings.sampling["max_tokens"],
        "wall_s": round(time.perf_counter() - started, 1),
        "prefix_cache_hit_rate": stats.get("prefix_cache_hit_rate"),
        "preemptions": stats.get("preemptions"),
    }
    write_json(output, result)
    return result


# --- the sweep ---------------------------------------------------------------------------------

# The engine keys a sweep point may set: the schema's (calibrate.sweep items), less model_path,
# which swaps the checkpoint (a quantized copy of the same model) instead.
POINT_ENGINE_KEYS = tuple(
    key
    for key in schema_for("calibrate")["properties"]["sweep"]["items"]["properties"]
    if key != "model_path"
)


def point_settings(settings: GenerationSettings, point: dict) -> GenerationSettings:
    """The generation settings of one sweep point: the config's, with the point's keys."""
    engine = {**settings.engine, **{k: v for k, v in point.items() if k in POINT_ENGINE_KEYS}}
    if "extra_args" in point:
        engine["extra_args"] = {**settings.engine.get("extra_args", {}), **point["extra_args"]}
    model = {**settings.model, "path": point.get("model_path", settings.model["path"])}
    return GenerationSettings.of({**settings.as_dict(), "engine": engine, "model": model})


def _probe_in_a_fresh_process(
    prompts_dirs: list[str], settings: GenerationSettings, prompts: int, out: Path
) -> dict:
    """One point's probe through `cosmoforge calibrate` in its own process: each engine starts
    on an empty GPU, and one that fails to start (too large a batch for the memory) is a
    failed point, not a failed sweep."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "cosmoforge", "calibrate", "--prompts-dirs", *prompts_dirs]
    command += ["--settings", json.dumps(settings.as_dict()), "--prompts", str(prompts)]
    command += ["--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CosmoforgeError(last[:300])
    return json.loads(out.read_text(encoding="utf-8"))


def sweep(
    prompts_dirs: list[str],
    settings: GenerationSettings | dict,
    points: list[dict],
    output: str | Path,
    prompts: int = 256,
    budget_gpu_minutes: float = 120,
    run_probe=_probe_in_a_fresh_process,
) -> dict:
    """Run the probe at each point (in order, until the GPU-minutes budget is spent), and write
    the fastest point's calibration, with the table of every point, to `output`."""
    settings = GenerationSettings.of(settings)
    table, best = [], None
    spent_gpu_s = 0.0
    with tempfile.TemporaryDirectory(prefix="cosmoforge-sweep-") as scratch:
        for i, point in enumerate(points):
            row = {"point": point}
            if spent_gpu_s >= budget_gpu_minutes * 60:
                table.append({**row, "skipped": "over the sweep budget"})
                continue
            this = point_settings(settings, point)
            try:
                result = run_probe(prompts_dirs, this, prompts, Path(scratch) / f"{i}.json")
            except CosmoforgeError as failed:
                table.append({**row, "failed": str(failed)})
                continue
            spent_gpu_s += (result["engine_start_s"] + result["generate_s"]) * result["gpus"]
            row.update(
                tokens_per_s_per_gpu=result["tokens_per_s_per_gpu"],
                engine_start_s=result["engine_start_s"],
                preemptions=result.get("preemptions"),
                gpus=result["gpus"],
            )
            table.append(row)
            rate = result["tokens_per_s_per_gpu"] or 0
            if best is None or rate > (best["tokens_per_s_per_gpu"] or 0):
                best = {**result, "engine_point": point}
    if best is None:
        raise CosmoforgeError(
            "calibrate sweep: no point ran; "
            + "; ".join(f"{r['point']}: {r.get('failed') or r.get('skipped')}" for r in table)
        )
    best["sweep"] = table
    best["sweep_gpu_minutes"] = round(spent_gpu_s / 60, 2)
    write_json(output, best)
    return best


def format_sweep(result: dict) -> str:
    lines = [f"{'point':<60}{'tok/s/GPU':>11}{'start s':>9}{'preempt.':>9}"]
    for row in result["sweep"]:
        point = json.dumps(row["point"], sort_keys=True)
        if "tokens_per_s_per_gpu" in row:
            preempted = "-" if row["preemptions"] is None else row["preemptions"]
            lines.append(
                f"{point:<60}{row['tokens_per_s_per_gpu'] or 0:>11,.1f}"
                f"{row['engine_start_s']:>9,.1f}{preempted:>9}"
            )
        else:
            lines.append(f"{point:<60}  {row.get('failed') or row.get('skipped')}")
    lines.append(
        f"best: {json.dumps(result['engine_point'], sort_keys=True)} at "
        f"{result['tokens_per_s_per_gpu']:,.1f} tok/s per GPU; {result['sweep_gpu_minutes']} "
        "GPU-minutes spent. Set these engine keys in your config to run with them."
    )
    return "\n".join(lines)


def load_calibration(path: str | Path) -> dict | None:
    """The calibration file if it exists and is readable; a broken one is an error, not ignored
    (a plan from a half-written file would look right and be wrong)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        float(data["tokens_per_s_per_gpu"])
        data["splits"].items()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CosmoforgeError(
            f"{path}: not a calibration file ({type(exc).__name__}: {exc}); delete it and "
            "rerun `make calibrate`"
        ) from exc
    return data


# --- command line ------------------------------------------------------------------------------


def split_prompt_files(items: list[str]) -> dict[str, list[Path]]:
    """SPLIT=DIR arguments: each split's prompt shard files."""
    return {
        split: sorted(Path(folder).glob("[0-9]*.parquet"))
        for split, _, folder in (item.partition("=") for item in items)
    }


# The arguments of the commands that run a probe of the run's prompts (calibrate, canary).
PROBE_ARGUMENTS = {
    "--prompts-dirs": {"required": True, "nargs": "+", "metavar": "SPLIT=DIR"},
    "--settings": GenerationSettings.argument(),
}


def _calibrate_command(args) -> None:
    if args.sweep:
        result = sweep(
            args.prompts_dirs,
            args.settings,
            args.sweep,
            args.out,
            prompts=args.prompts,
            budget_gpu_minutes=args.sweep_budget_gpu_minutes,
        )
        print(format_sweep(result))
        return
    result = calibrate(
        split_prompt_files(args.prompts_dirs), args.settings, args.out, prompts=args.prompts
    )
    print(json.dumps(result, indent=2))


COMMANDS = (
    Command(
        "calibrate",
        "measure tok/s and tokens per prompt on a probe of the run's prompts",
        _calibrate_command,
        {
            **PROBE_ARGUMENTS,
            "--prompts": {"type": int, "default": 256, "help": "probe size (all splits together)"},
            "--out": path_arg("results/<run>/calibration.json"),
            "--sweep": {
                "type": config_value_arg("calibrate.sweep", json_arg),
                "default": [],
                "help": "calibrate.sweep as JSON: engine settings to try, the fastest kept",
            },
            "--sweep-budget-gpu-minutes": {"type": float, "default": 120.0},
        },
    ),
)
