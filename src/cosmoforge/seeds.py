"""Seed readers: local jsonl/parquet/csv files or `datasets.load_dataset` names.

Each source has a *kind* that fixes which fields a seed row must provide. Source columns are
mapped onto those fields by the source's ``fields`` option. A row that is unusable (undecodable,
not an object, a required field missing, empty or of the wrong type) is either skipped and counted
(``on_bad_row: skip``) or stops the run with an error naming the file, row and field
(``on_bad_row: error``). Nothing is dropped silently: every skip is in the seed report.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import SeedError
from .io import stable_hash

# kind -> (required fields, optional fields). All values are strings.
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "web": (("text",), ("id", "topic", "url")),
    "auto_math_text": (("text",), ("id", "url")),
    "stanford": (("course_title", "unit_title"), ("id", "course_description", "section_title")),
    "ultrachat": (("question",), ("id",)),
    "openhermes": (("instruction", "answer"), ("id",)),
    "wikihow": (("title",), ("id",)),
    "openstax": (
        ("book_title", "chapter_title", "section_title", "unit_title"),
        ("id", "text"),
    ),
    "khanacademy": (("course_title", "unit_title", "lesson_title"), ("id", "lesson_outline")),
}

# Columns of the seed table besides the kinds' fields.
BASE_COLUMNS = ("seed_id", "source", "kind", "row")
MAX_EXAMPLES = 20


@dataclass
class SourceReport:
    name: str
    location: str
    rows_read: int = 0
    rows_kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(message)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "location": self.location,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
            "examples": self.examples,
        }


class BadRow(Exception):
    def __init__(self, reason: str, field_name: str | None, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.field_name = field_name
        self.detail = detail


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield line_no, BadRow("undecodable", None, f"not UTF-8 ({exc.reason})")
                continue
            try:
                yield line_no, json.loads(text)
            except json.JSONDecodeError as exc:
                yield line_no, BadRow("invalid_json", None, f"not valid JSON ({exc.msg})")


def _iter_csv(path: Path) -> Iterator[tuple[int, Any]]:
    # surrogateescape keeps undecodable bytes visible so they are reported per row and field
    # instead of aborting the whole file.
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        yield from enumerate(csv.DictReader(fh), start=1)


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SeedError(f"{path}: not a readable parquet file ({exc})") from exc
    row_no = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, row


def _iter_hf(source: dict) -> Iterator[tuple[int, Any]]:
    import datasets  # optional dependency: only for hub sources

    ds = datasets.load_dataset(
        source["dataset"],
        source.get("dataset_config"),
        split=source.get("dataset_split", "train"),
        streaming=True,
    )
    yield from enumerate(ds, start=1)


def source_location(source: dict) -> str:
    if source["format"] == "hf":
        return f"hf:{source['dataset']}" + (
            f"/{source['dataset_config']}" if source.get("dataset_config") else ""
        )
    return source["path"]


def iter_source_rows(source: dict, base_dir: Path | None = None) -> Iterator[tuple[int, Any]]:
    fmt = source["format"]
    if fmt == "hf":
        yield from _iter_hf(source)
        return
    path = Path(source["path"])
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise SeedError(f"{path}: seed file not found (source '{source['name']}')")
    readers = {"jsonl": _iter_jsonl, "csv": _iter_csv, "parquet": _iter_parquet}
    yield from readers[fmt](path)


def normalize_row(raw: Any, kind: str, fields: dict[str, str]) -> dict[str, str | None]:
    """Map a raw row onto the kind's fields; raise BadRow naming the (source) field at fault."""
    if isinstance(raw, BadRow):
        raise raw
    if not isinstance(raw, dict):
        raise BadRow("not_an_object", None, f"row is a {type(raw).__name__}, not an object")
    required, optional = KINDS[kind]
    out: dict[str, str | None] = {}
    for name in required + optional:
        column = fields.get(name, name)
        value = raw.get(column)
        if name == "id" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None:
            if name in required:
                raise BadRow("missing_field", column, f"field '{column}' is missing")
            out[name] = None
            continue
        if not isinstance(value, str):
            raise BadRow(
                "wrong_type", column, f"field '{column}' is {type(value).__name__}, expected string"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRow("undecodable", column, f"field '{column}' is not valid UTF-8") from None
        if not value.strip():
            if name in required:
                raise BadRow("empty_field", column, f"field '{column}' is empty")
            out[name] = None
            continue
        out[name] = value
    return out


def read_split_seeds(
    split: str,
    sources: list[dict],
    on_bad_row: str = "skip",
    max_seeds: int | None = None,
    base_dir: Path | None = None,
) -> tuple[pa.Table, dict]:
    """Read, validate and normalize every source of a split into one seed table and a report."""
    kinds = sorted({s["kind"] for s in sources})
    columns = list(BASE_COLUMNS)
    for kind in kinds:
        required, optional = KINDS[kind]
        columns += [c for c in required + optional if c not in columns]
    rows: list[dict] = []
    reports: list[SourceReport] = []
    seen_ids: dict[str, str] = {}
    for source in sources:
        location = source_location(source)
        report = SourceReport(source["name"], location)
        reports.append(report)
        for row_no, raw in iter_source_rows(source, base_dir):
            report.rows_read += 1
            where = f"{location}: row {row_no}"
            try:
                seed = normalize_row(raw, source["kind"], source.get("fields", {}))
                local_id = seed.get("id") or stable_hash(
                    *(seed[k] for k in KINDS[source["kind"]][0]), length=12
                )
                seed_id = f"{source['name']}:{local_id}"
                if seed_id in seen_ids:
                    raise BadRow(
                        "duplicate_id",
                        source.get("fields", {}).get("id", "id"),
                        f"seed id '{local_id}' already used at {seen_ids[seed_id]}",
                    )
            except BadRow as bad:
                field_part = f", field '{bad.field_name}'" if bad.field_name else ""
                message = f"{where}{field_part}: {bad.detail}"
                if on_bad_row == "error":
                    raise SeedError(f"bad seed row in split '{split}': {message}") from None
                report.skip(bad.reason, message)
                continue
            seen_ids[seed_id] = where
            seed.pop("id", None)
            row = {c: None for c in columns}
            row.update(seed)
            row.update(seed_id=seed_id, source=source["name"], kind=source["kind"], row=row_no)
            rows.append(row)
            report.rows_kept += 1
    limited = 0
    if max_seeds is not None and len(rows) > max_seeds:
        limited = len(rows) - max_seeds
        rows = rows[:max_seeds]
    if not rows:
        raise SeedError(
            f"split '{split}': no usable seed rows in "
            + ", ".join(r.location for r in reports)
            + " (see the skipped rows above in the seed report)"
        )
    schema = pa.schema([(c, pa.int64() if c == "row" else pa.string()) for c in columns])
    table = pa.Table.from_pylist(rows, schema=schema)
    report = {
        "split": split,
        "seeds": table.num_rows,
        "seeds_left_out_by_max_seeds": limited,
        "sources": [r.as_dict() for r in reports],
    }
    return table, report
