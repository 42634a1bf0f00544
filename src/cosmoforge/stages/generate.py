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

import contextlib
import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.declare import GENERATION_SETTINGS, Command, path_arg
from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.core.io import derive_seed, write_json, write_parquet
from cosmoforge.core.tables import (
    GENERATION_SCHEMA,
    read_prompt_shard,
)
from cosmoforge.engines import ENGINES, Completion, Request
from cosmoforge.engines.model import model_revision

log = logging.getLogger(__name__)


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def request_seed(global_seed: int, split: str, template_id: str, sample_id: str) -> int:
    return derive_seed(global_seed, split, template_id, sample_id, "generation")


# Engine settings that change what is generated (the others only change speed or memory).
OUTPUT_ENGINE_KEYS = ("backend", "dtype", "max_model_len", "per_request_seeds", "extra_args")
FINGERPRINT_KEY = b"cosmoforge.row_settings"


def row_settings(settings: dict, revision: str | None) -> dict:
    """Everything besides the prompt that makes a generated row what it is."""
    engine = settings["engine"]
    return {
        "model": {"name": settings["model"]["name"], "revision": revision},
        "sampling": settings["sampling"],
        "seed": settings["seed"],
        "engine": {k: engine[k] for k in OUTPUT_ENGINE_KEYS if k in engine}
        | (
            {"served_model": engine["openai"]["model"]} if engine.get("backend") == "openai" else {}
        ),
    }


def _flat(settings: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _settings_change(made_with: dict, current: dict) -> str:
    """'sampling.temperature 0.7 -> 0.6, ...': how a part's settings differ from the current."""
    old, new = _flat(made_with), _flat(current)
    changes = [
        f"{k} {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}"
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    ]
    return ", ".join(changes[:4]) + (f" and {len(changes) - 4} more" if len(changes) > 4 else "")


def set_aside_dir(folder: Path) -> Path:
    return folder.with_name(folder.name + ".set-aside")


def _set_aside(part: Path, reason: str) -> None:
    target_dir = set_aside_dir(part.parent)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / part.name
    n = 1
    while target.exists():
        target = target_dir / f"{part.stem}.{n}{part.suffix}"
        n += 1
    part.rename(target)
    log.warning("%s: not reused, %s; moved to %s", part, reason, target)


def _part_problem(table: pa.Table, made_with: dict | None, current: dict, prompts: dict) -> str:
    """Why a part cannot be reused, or '' if it can."""
    missing = [n for n in GENERATION_SCHEMA.names if n not in table.schema.names]
    if missing:
        return f"it lacks column(s) {missing} of a generation part"
    if made_with is None:
        return "it records no generation settings (made by an older cosmoforge)"
    if made_with != current:
        return "it was made with other settings: " + _settings_change(made_with, current)
    for sample_id, prompt in zip(
        table.column("sample_id").to_pylist(), table.column("prompt").to_pylist(), strict=True
    ):
        if sample_id not in prompts:
            return f"its sample {sample_id!r} is not in the current prompt file"
        if prompts[sample_id] != prompt:
            return f"the prompt of sample {sample_id!r} has changed (template or seed edited)"
    return ""


def load_parts(
    folder: Path, current: dict | None = None, prompts: dict[str, str] | None = None
) -> tuple[dict[str, dict], int]:
    """Rows already finished by earlier runs, by sample id, and the next part number. With
    `current` (row settings) and `prompts` (sample id -> prompt text), a part that does not
    match them is set aside instead of reused."""
    done: dict[str, dict] = {}
    if not folder.is_dir():
        return done, 0
    parts = sorted(folder.glob("part-*.parquet"))
    next_index = 1 + max((int(p.stem.split("-")[1]) for p in parts), default=-1)
    for part in parts:
        try:
            table = pq.read_table(part)
        except (pa.ArrowException, OSError) as exc:
            _set_aside(part, f"it is unreadable ({exc})")
            continue
        meta = table.schema.metadata or {}
        made_with = json.loads(meta[FINGERPRINT_KEY]) if FINGERPRINT_KEY in meta else None
        if current is not None:
            problem = _part_problem(table, made_with, current, prompts or {})
            if problem:
                _set_aside(part, problem)
                continue
        for row in table.select(GENERATION_SCHEMA.names).to_pylist():
            # An error row is not finished work (parts made before errors were kept out of
            # them may hold some): the rerun asks again.
            if row["error"]:
                continue
            # A part is only ever renamed into place complete, and reruns skip finished ids,
            # so repeats cannot happen; keep the first anyway rather than trusting that.
            done.setdefault(row["sample_id"], row)
    return done, next_index


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM or SIGUSR1 (BaseException: no `except Exception`
    on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name


class GenerationFailed(CosmoforgeError):
    """A shard that is not done for a reason outside the job: too many engine errors."""


class GenerationStopped(CosmoforgeError):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.contextmanager
def stop_on_signals(signums=(signal.SIGTERM, signal.SIGUSR1)):
    """Slurm sends SIGTERM on preemption, scancel and at the time limit (then SIGKILL after
    KillWait), and the profile asks for SIGUSR1 a margin before the limit. Python's default
    SIGTERM handling exits without running `finally`, losing every row since the last flush;
    here the signal stops generation where it is so the finished rows are flushed first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    fired = False

    def handler(signum, frame):
        nonlocal fired
        if not fired:  # later signals must not interrupt the final flush
            fired = True
            raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def generate_shard(
    prompts_path: str | Path,
    output: str | Path,
    settings: dict,
    stats_path: str | Path | None = None,
    engine_factory: Callable | None = None,
) -> dict:
    """Run one shard's prompt file through the engine; write `output`. SIGTERM or SIGUSR1 at
    any point (engine start-up included) stops it with every finished row saved."""
    with stop_on_signals():
        try:
            return _generate_shard(prompts_path, output, settings, stats_path, engine_factory)
        except Stopped as stop:  # before generation began, or while writing the shard
            raise GenerationStopped(
                f"{output}: stopped by {stop.signal_name} outside generation; finished rows "
                f"are kept in {parts_dir(Path(output))}, rerun to resume",
                exit_code=128 + stop.signum,
            ) from None


class _Checkpoint:
    """Finished rows of a shard, buffered and written as numbered parts of `folder`, each part
    carrying the settings fingerprint its rows were made with (so a rerun reuses only parts that
    are still current)."""

    def __init__(self, folder: Path, next_part: int, fingerprint: dict, flush_every: int):
        self.folder, self.next_part, self.flush_every = folder, next_part, flush_every
        self.schema = GENERATION_SCHEMA.with_metadata(
            {FINGERPRINT_KEY: json.dumps(fingerprint, sort_keys=True)}
        )
        self.buffer: list[dict] = []  # the folder is made by the first part's write

    def add(self, row: dict) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            table = pa.Table.from_pylist(self.buffer, schema=self.schema)
            write_parquet(self.folder / f"part-{self.next_part:05d}.parquet", table)
            self.next_part += 1
            self.buffer.clear()


def _requests(todo: list[dict], settings: dict) -> list[Request]:
    per_request = settings["engine"].get("per_request_seeds", True)
    return [
        Request(
            p["sample_id"],
            p["prompt"],
            request_seed(settings["seed"], p["split"], p["template_id"], p["sample_id"])
            if per_request
            else None,
        )
        for p in todo
    ]


def _generate_todo(todo, done, checkpoint, settings, revision, stats, engine_factory, where):
    """Start the engine and generate `todo`, adding each row to `done` and each finished one to
    the checkpoint; `stats` gets the engine's figures. `where` = (output, prompt count) for the
    message of a job stopped by a signal."""
    model, engine_cfg, sampling = settings["model"], settings["engine"], settings["sampling"]
    factory = engine_factory or ENGINES[engine_cfg["backend"]]
    started = time.perf_counter()
    engine = factory(model, engine_cfg, sampling)
    stats["engine_start_s"] = round(time.perf_counter() - started, 3)
    by_id = {p["sample_id"]: p for p in todo}
    requests = _requests(todo, settings)
    seeds = {r.sample_id: r.seed for r in requests}
    common = {
        "model": model["name"],
        "model_revision": revision,
        "engine": engine.name,
        "engine_version": engine.version,
    }
    started = time.perf_counter()
    try:
        for completion in engine.run(requests):
            row = _row(by_id[completion.sample_id], completion, common, sampling, seeds)
            stats["completion_tokens"] += completion.completion_tokens
            stats["prompt_tokens"] += completion.prompt_tokens
            done[completion.sample_id] = row
            if not row["error"]:  # only finished work is checkpointed; errors are retried
                checkpoint.add(row)
    except Stopped as stop:
        checkpoint.flush()  # a signal during a flush interrupted it; its rows are still buffered
        output, prompts = where
        raise GenerationStopped(
            f"{output}: stopped by {stop.signal_name}; every finished row is saved in "
            f"{checkpoint.folder} ({len(done)} of {prompts}), rerun to resume",
            exit_code=128 + stop.signum,
        ) from None
    finally:
        # On an exception (not on SIGKILL) keep what is finished for the rerun.
        checkpoint.flush()
    stats["generate_s"] = round(time.perf_counter() - started, 3)
    if hasattr(engine, "cache_stats"):
        stats.update(engine.cache_stats())
    if stats["generate_s"] > 0:
        stats["completion_tokens_per_s"] = round(
            stats["completion_tokens"] / stats["generate_s"], 2
        )


def _generate_shard(prompts_path, output, settings, stats_path, engine_factory) -> dict:
    job_started = time.perf_counter()
    output = Path(output)
    prompts = read_prompt_shard(prompts_path).to_pylist()
    folder = parts_dir(output)
    engine_cfg = settings["engine"]
    revision = model_revision(settings["model"]["path"], settings["model"].get("revision"))
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
        "generate_s": 0.0,
        "completion_tokens": 0,
        "prompt_tokens": 0,
    }
    if todo:
        checkpoint = _Checkpoint(folder, next_part, current, engine_cfg["flush_every"])
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
            "--settings": GENERATION_SETTINGS,
        },
    ),
)
