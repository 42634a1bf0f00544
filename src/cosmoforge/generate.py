"""Generate one shard of prompts, resumably.

Finished rows are checkpointed every `flush_every` completions as numbered part files in
`<output>.parts/` (each written atomically). A rerun after a crash reads the parts, skips the
sample ids already done and sends only the rest to the engine; the shard's parquet appears,
atomically, only once every prompt has exactly one row. Nothing is lost but the rows of the
unflushed micro-batch, and nothing is duplicated.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .engines import ENGINES, Completion, Request
from .io import derive_seed, write_json, write_parquet
from .model import model_revision
from .prompts import PROMPT_SCHEMA, read_prompt_shard

log = logging.getLogger(__name__)

GENERATION_FIELDS = [
    ("text", pa.string()),
    ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int32()),
    ("completion_tokens", pa.int32()),
    ("error", pa.string()),
    ("model", pa.string()),
    ("model_revision", pa.string()),
    ("engine", pa.string()),
    ("engine_version", pa.string()),
    ("sampling", pa.string()),
    ("request_seed", pa.int64()),
]
GENERATION_SCHEMA = pa.schema(list(PROMPT_SCHEMA) + [pa.field(n, t) for n, t in GENERATION_FIELDS])


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def request_seed(global_seed: int, split: str, template_id: str, sample_id: str) -> int:
    return derive_seed(global_seed, split, template_id, sample_id, "generation")


def load_parts(folder: Path) -> tuple[dict[str, dict], int]:
    """Rows already finished by earlier runs, by sample id, and the next part number."""
    done: dict[str, dict] = {}
    if not folder.is_dir():
        return done, 0
    parts = sorted(folder.glob("part-*.parquet"))
    for part in parts:
        for row in pq.read_table(part).to_pylist():
            # A part is only ever renamed into place complete, and reruns skip finished ids,
            # so repeats cannot happen; keep the first anyway rather than trusting that.
            done.setdefault(row["sample_id"], row)
    next_index = 1 + max((int(p.stem.split("-")[1]) for p in parts), default=-1)
    return done, next_index


def generate_shard(
    prompts_path: str | Path,
    output: str | Path,
    settings: dict,
    stats_path: str | Path | None = None,
    engine_factory: Callable | None = None,
) -> dict:
    """Run one shard's prompt file through the engine; write `output`."""
    output = Path(output)
    prompts = read_prompt_shard(prompts_path).to_pylist()
    folder = parts_dir(output)
    done, next_part = load_parts(folder)
    todo = [p for p in prompts if p["sample_id"] not in done]
    model, engine_cfg, sampling = settings["model"], settings["engine"], settings["sampling"]
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
        "generate_s": 0.0,
        "completion_tokens": 0,
        "prompt_tokens": 0,
    }
    if todo:
        factory = engine_factory or ENGINES[engine_cfg["backend"]]
        started = time.perf_counter()
        engine = factory(model, engine_cfg, sampling)
        stats["engine_start_s"] = round(time.perf_counter() - started, 3)
        revision = model_revision(model["path"], model.get("revision"))
        by_id = {p["sample_id"]: p for p in todo}
        requests = [
            Request(
                p["sample_id"],
                p["prompt"],
                request_seed(settings["seed"], p["split"], p["template_id"], p["sample_id"]),
            )
            for p in todo
        ]
        seeds = {r.sample_id: r.seed for r in requests}
        common = {
            "model": model["name"],
            "model_revision": revision,
            "engine": engine.name,
            "engine_version": engine.version,
        }
        buffer: list[dict] = []
        started = time.perf_counter()

        def flush() -> None:
            nonlocal next_part
            if buffer:
                table = pa.Table.from_pylist(buffer, schema=GENERATION_SCHEMA)
                write_parquet(folder / f"part-{next_part:05d}.parquet", table)
                next_part += 1
                buffer.clear()

        folder.mkdir(parents=True, exist_ok=True)
        try:
            for completion in engine.run(requests):
                row = _row(by_id[completion.sample_id], completion, common, sampling, seeds)
                stats["completion_tokens"] += completion.completion_tokens
                stats["prompt_tokens"] += completion.prompt_tokens
                done[completion.sample_id] = row
                buffer.append(row)
                if len(buffer) >= engine_cfg["flush_every"]:
                    flush()
        finally:
            # On an exception (not on SIGKILL) keep what is finished for the rerun.
            flush()
        stats["generate_s"] = round(time.perf_counter() - started, 3)
        if stats["generate_s"] > 0:
            stats["completion_tokens_per_s"] = round(
                stats["completion_tokens"] / stats["generate_s"], 2
            )
    missing = [p["sample_id"] for p in prompts if p["sample_id"] not in done]
    if missing:
        raise RuntimeError(
            f"{output}: the engine returned no result for {len(missing)} prompt(s), "
            f"e.g. {missing[:3]}; finished rows are kept in {folder}, rerun to complete"
        )
    rows = [done[p["sample_id"]] for p in prompts]
    stats["rows"] = len(rows)
    stats["errors"] = sum(1 for r in rows if r["error"])
    if stats_path is not None:
        write_json(stats_path, stats)
    write_parquet(output, pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA))
    shutil.rmtree(folder, ignore_errors=True)
    log.info("%s: wrote %d rows (%s)", output, len(rows), json.dumps(stats))
    return stats


def _row(prompt: dict, completion: Completion, common: dict, sampling: dict, seeds: dict) -> dict:
    row = dict(prompt)
    row.update(common)
    row.update(
        text=completion.text,
        finish_reason=completion.finish_reason,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        error=completion.error,
        sampling=json.dumps(sampling, sort_keys=True),
        request_seed=seeds[completion.sample_id],
    )
    return row
