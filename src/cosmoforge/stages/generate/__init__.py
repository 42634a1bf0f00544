"""Generate one shard of prompts, resumably.

Finished rows are checkpointed every `flush_every` completions as numbered part files in
`<output>.parts/` (each written atomically). A rerun after a crash reads the parts, skips the
sample ids already done and sends only the rest to the engine; the shard's parquet appears,
atomically, only once every prompt has exactly one row. Nothing is lost but the rows of the
unflushed micro-batch, and nothing is duplicated.

A part is reused only if it was made with the settings that make a row what it is (model and
revision, sampling, seed, the engine settings that change outputs) and each of its rows has
the prompt text of the current prompt file. Any other part (other settings, an edited template,
unreadable, another schema) is moved to `<output>.parts.set-aside/` with a warning naming it,
and its prompts are generated again: a resumed shard never mixes rows of two settings.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from cosmoforge.core.declare import Command, path_arg
from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.core.io import derive_seed, write_json, write_parquet
from cosmoforge.core.settings import GenerationSettings
from cosmoforge.core.tables import (
    GENERATION_SCHEMA,
    read_prompt_shard,
)
from cosmoforge.engines import ENGINES, Completion, Request
from cosmoforge.engines.model import model_revision
from cosmoforge.stages.generate.parts import (
    Checkpoint,
    load_parts,
    parts_dir,
    row_settings,
    set_aside_dir,
)
from cosmoforge.stages.generate.stopping import GenerationStopped, Stopped, stop_on_signals
from cosmoforge.stages.generate.supervise import EngineGaveUp, run_supervised

__all__ = [
    "GenerationFailed",
    "GenerationStopped",
    "generate_shard",
    "parts_dir",
    "request_seed",
    "set_aside_dir",
]

log = logging.getLogger(__name__)


def request_seed(global_seed: int, split: str, template_id: str, sample_id: str) -> int:
    return derive_seed(global_seed, split, template_id, sample_id, "generation")


class GenerationFailed(CosmoforgeError):
    """A shard that is not done for a reason outside the job: too many engine errors."""


def generate_shard(
    prompts_path: str | Path,
    output: str | Path,
    settings: GenerationSettings | dict,
    stats_path: str | Path | None = None,
    engine_factory: Callable | None = None,
) -> dict:
    """Run one shard's prompt file through the engine; write `output`. SIGTERM or SIGUSR1 at
    any point (engine start-up included) stops it with every finished row saved."""
    settings = GenerationSettings.of(settings)
    with stop_on_signals():
        try:
            return _generate_shard(prompts_path, output, settings, stats_path, engine_factory)
        except Stopped as stop:  # before generation began, or while writing the shard
            raise GenerationStopped(
                f"{output}: stopped by {stop.signal_name} outside generation; finished rows "
                f"are kept in {parts_dir(Path(output))}, rerun to resume",
                exit_code=128 + stop.signum,
            ) from None


def _requests(todo: list[dict], settings: GenerationSettings) -> list[Request]:
    per_request = settings.engine.get("per_request_seeds", True)
    return [
        Request(
            p["sample_id"],
            p["prompt"],
            request_seed(settings.seed, p["split"], p["template_id"], p["sample_id"])
            if per_request
            else None,
        )
        for p in todo
    ]


def _generate_todo(todo, done, checkpoint, settings, revision, stats, engine_factory, where):
    """Start the engine and generate `todo`, adding each row to `done` and each finished one to
    the checkpoint; `stats` gets the engine's figures. An engine that dies or freezes is started
    again (supervise.py). `where` = (output, prompt count) for the message of a job stopped by
    a signal."""
    model, engine_cfg, sampling = settings.model, settings.engine, settings.sampling
    factory = engine_factory or ENGINES[engine_cfg["backend"]]
    by_id = {p["sample_id"]: p for p in todo}
    requests = _requests(todo, settings)
    seeds = {r.sample_id: r.seed for r in requests}
    engines = []

    def start_engine():
        engines.append(factory(model, engine_cfg, sampling))
        return engines[-1]

    def on_completion(completion: Completion) -> None:
        engine = engines[-1]
        common = {
            "model": model["name"],
            "model_revision": revision,
            "engine": engine.name,
            "engine_version": engine.version,
        }
        row = _row(by_id[completion.sample_id], completion, common, sampling, seeds)
        stats["completion_tokens"] += completion.completion_tokens
        stats["prompt_tokens"] += completion.prompt_tokens
        done[completion.sample_id] = row
        if not row["error"]:  # only finished work is checkpointed; errors are retried
            checkpoint.add(row)

    started = time.perf_counter()
    try:
        run_supervised(start_engine, requests, on_completion, checkpoint.flush, engine_cfg, stats)
    except Stopped as stop:
        checkpoint.flush()  # a signal during a flush interrupted it; its rows are still buffered
        output, prompts = where
        raise GenerationStopped(
            f"{output}: stopped by {stop.signal_name}; every finished row is saved in "
            f"{checkpoint.folder} ({len(done)} of {prompts}), rerun to resume",
            exit_code=128 + stop.signum,
        ) from None
    except EngineGaveUp as gave_up:
        raise GenerationFailed(f"{where[0]}: {gave_up}") from None
    finally:
        # On an exception (not on SIGKILL) keep what is finished for the rerun.
        checkpoint.flush()
    stats["generate_s"] = round(time.perf_counter() - started - stats["engine_start_s"], 3)
    if hasattr(engines[-1], "cache_stats"):
        stats.update(engines[-1].cache_stats())
    if stats["generate_s"] > 0:
        stats["completion_tokens_per_s"] = round(
            stats["completion_tokens"] / stats["generate_s"], 2
        )


def _generate_shard(prompts_path, output, settings, stats_path, engine_factory) -> dict:
    job_started = time.perf_counter()
    output = Path(output)
    prompts = read_prompt_shard(prompts_path).to_pylist()
    folder = parts_dir(output)
    engine_cfg = settings.engine
    revision = model_revision(settings.model["path"], settings.model.get("revision"))
    current = row_settings(settings, revision)
    done, next_part = load_parts(folder, current, {p["sample_id"]: p["prompt"] for p in prompts})
    todo = [p for p in prompts if p["sample_id"] not in done]
    log.info(
        "%s: %d prompts, %d already done in %s, %d to generate",
        prompts_path,
        len(prompts),
        len(prompts) - len(todo),
        folder,
        len(todo),
    )
    stats = {
        "prompts": len(prompts),
        "resumed_rows": len(prompts) - len(todo),
        "generated_rows": len(todo),
        "engine_start_s": 0.0,
        "engine_restarts": 0,
        "engine_lost_s": 0.0,
        "generate_s": 0.0,
        "completion_tokens": 0,
        "prompt_tokens": 0,
    }
    if todo:
        checkpoint = Checkpoint(folder, next_part, current, engine_cfg["flush_every"])
        where = (output, len(prompts))
        _generate_todo(todo, done, checkpoint, settings, revision, stats, engine_factory, where)
    missing = [p["sample_id"] for p in prompts if p["sample_id"] not in done]
    if missing:
        raise RuntimeError(
            f"{output}: the engine returned no result for {len(missing)} prompt(s), "
            f"e.g. {missing[:3]}; finished rows are kept in {folder}, rerun to complete"
        )
    rows = [done[p["sample_id"]] for p in prompts]
    check_error_share(rows, engine_cfg, output, folder)
    stats["rows"] = len(rows)
    stats["total_completion_tokens"] = sum(r["completion_tokens"] or 0 for r in rows)
    stats["errors"] = sum(1 for r in rows if r["error"])
    # What the GPUs were held for by this (last) attempt: reading, start-up, decoding, writing.
    stats["job_s"] = round(time.perf_counter() - job_started, 3)
    stats["gpu_hours"] = round(stats["job_s"] * engine_cfg.get("tensor_parallel_size", 1) / 3600, 6)
    if stats_path is not None:
        write_json(stats_path, stats)
    write_parquet(output, pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA))
    shutil.rmtree(folder, ignore_errors=True)
    log.info("%s: wrote %d rows (%s)", output, len(rows), json.dumps(stats))
    return stats


def check_error_share(rows: list[dict], engine: dict, output: Path, folder: Path) -> None:
    """A shard whose rows are all engine errors, or more than engine.max_error_share of them,
    is not done: one line names the first error (and the server), and nothing complete-looking
    is written. Its good rows stay in the parts; the rerun asks again for the rest."""
    errors = [r for r in rows if r["error"]]
    share = engine.get("max_error_share", 0.1)
    if not errors or (len(errors) < len(rows) and len(errors) <= share * len(rows)):
        return
    where = ""
    if engine.get("backend") == "openai":
        where = f" from the server {engine['openai']['base_url']}"
    raise GenerationFailed(
        f"{output}: {len(errors)} of {len(rows)} rows are engine errors{where}, more than "
        f"engine.max_error_share ({share:.0%}); first: {errors[0]['error'][:200]}; the "
        f"{len(rows) - len(errors)} good rows are kept in {folder}: fix the cause and rerun"
    )


def clean_text(text: str) -> str:
    """Model output as storable UTF-8: NUL characters go, and a lone surrogate (a Python str can
    hold one, UTF-8 cannot, so the parquet write would fail on every retry) becomes U+FFFD."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _row(prompt: dict, completion: Completion, common: dict, sampling: dict, seeds: dict) -> dict:
    row = dict(prompt)
    row.update(common)
    row.update(
        text=clean_text(completion.text),
        finish_reason=completion.finish_reason,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        error=completion.error,
        sampling=json.dumps(sampling, sort_keys=True),
        request_seed=seeds[completion.sample_id],
    )
    return row


# --- command line ------------------------------------------------------------------------------


def _generate_command(args) -> None:
    generate_shard(args.prompts, args.out, args.settings, stats_path=args.stats)


COMMANDS = (
    Command(
        "generate",
        "generate one prompt shard with the configured engine (resumable)",
        _generate_command,
        {
            "--prompts": path_arg("the shard's prompt file"),
            "--out": path_arg("the generated shard (parquet)"),
            "--stats": path_arg("the shard's generation statistics (JSON)"),
            "--settings": GenerationSettings.argument(),
        },
    ),
)
