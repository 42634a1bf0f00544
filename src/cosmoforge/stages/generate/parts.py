"""A shard's finished rows on disk while it is generated: numbered part files in
`<output>.parts/`, each carrying the settings its rows were made with, and the rules for reusing
them on a rerun (see the package's docstring)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.io import write_parquet
from cosmoforge.core.settings import GenerationSettings
from cosmoforge.core.tables import GENERATION_SCHEMA

log = logging.getLogger(__name__)


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


# Engine settings that change what is generated (the others only change speed or memory).
OUTPUT_ENGINE_KEYS = ("backend", "dtype", "max_model_len", "per_request_seeds", "extra_args")
FINGERPRINT_KEY = b"cosmoforge.row_settings"


def row_settings(settings: GenerationSettings, revision: str | None) -> dict:
    """Everything besides the prompt that makes a generated row what it is."""
    engine = settings.engine
    return {
        "model": {"name": settings.model["name"], "revision": revision},
        "sampling": settings.sampling,
        "seed": settings.seed,
        "engine": {k: engine[k] for k in OUTPUT_ENGINE_KEYS if k in engine}
        | ({"served_model": engine["openai"]["model"]} if engine.get("backend") == "openai" else {})
        # Only when set: parts made before the key existed stay reusable.
        | (
            {"chat_template_kwargs": engine["chat_template_kwargs"]}
            if engine.get("chat_template_kwargs")
            else {}
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


class Checkpoint:
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
