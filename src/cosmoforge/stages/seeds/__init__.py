"""The seeds stage: a split's sources (local jsonl/parquet/csv files or `datasets` names,
streamed; readers.py) checked row by row or batch by batch (rows.py) into one seed file.

Each source has a *kind* that fixes which fields a seed row must provide. Source columns are
mapped onto those fields by the source's ``fields`` option. A row that is unusable (undecodable,
not an object, a required field missing, empty or of the wrong type) is either skipped and counted
(``on_bad_row: skip``) or stops the run with an error naming the file, row and field
(``on_bad_row: error``). Nothing is dropped silently: every skip is in the seed report.

Sources are read, validated and written in batches of ``BATCH_ROWS`` rows, so memory is bounded
by a batch, not by the split. Parquet files and `datasets` sources are read as Arrow batches and
validated column-wise; JSON lines are parsed by Arrow a chunk at a time and CSV batches holding
only strings are checked column-wise too. A chunk or batch with an odd row in it goes row by
row, which names each bad row exactly.

Duplicate seed ids are found exactly with bounded memory: every id's 64-bit xxh3 hash goes into an
open-addressing hash set (:class:`IdHashSet`, 8 bytes a slot, at most 3/4 full: 11-21 bytes per
id, about 180 MB at 10M ids). A row whose hash is already in the set is held back as a *suspect*
(on disk) instead of being written. After the pass the suspects' hashes are looked up in the
written ids (one scan of the seed_id column) and compared as strings: an equal id is a duplicate
(skipped or an error, naming both rows); a different id is a hash collision (about one in
10^6 runs at 10M ids) and its row is kept, appended after the others.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.contracts import KINDS
from cosmoforge.core.declare import SPLIT, Command, path_arg, settings_arg
from cosmoforge.core.errors import SeedError
from cosmoforge.core.io import atomic_path, iter_parquet, stable_hash, write_json
from cosmoforge.stages.seeds.readers import (
    _arrow_json_batch,
    _batched,
    _csv_rows,
    _hf_batches,
    _jsonl_chunks,
    _parquet_batches,
    _parsed_lines,
    source_location,
    source_path,
)
from cosmoforge.stages.seeds.rows import (
    BadRow,
    IdHashSet,
    _normalize_arrow,
    hash_ids,
    normalize_row,
)

log = logging.getLogger(__name__)

# Columns of the seed table besides the kinds' fields.
BASE_COLUMNS = ("seed_id", "source", "kind", "row")
MAX_EXAMPLES = 20
# Rows per read batch and per row group of the seed file (readers downstream read row groups).
BATCH_ROWS = 4096
# The seed file is an intermediate read once or twice: snappy writes 3-4x faster than zstd
# (measured on 600 MB of web-like text: 1.2 s vs 4.3 s) for about twice the size; only the
# source and kind columns repeat enough for a dictionary.
SEED_FILE_OPTIONS = {"compression": "snappy", "use_dictionary": ["source", "kind"]}


def seed_cap(max_seeds: int | str | None) -> int | None:
    """A split's `max_seeds` as a number, or None for `all` (every seed)."""
    return None if max_seeds in ("all", None) else int(max_seeds)


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


# --- the split's seed file ---------------------------------------------------------------------


def seed_columns(sources: list[dict]) -> list[str]:
    columns = list(BASE_COLUMNS)
    for kind in sorted({s["kind"] for s in sources}):
        required, optional = KINDS[kind]
        columns += [c for c in required + optional if c != "id" and c not in columns]
    return columns


def seed_schema(columns: list[str]) -> pa.Schema:
    return pa.schema([(c, pa.int64() if c == "row" else pa.string()) for c in columns])


class _SplitWriter:
    """Rows in, batches of the seed schema out to one parquet writer; duplicates held back."""

    def __init__(self, split, schema, writer, suspects_writer, on_bad_row, max_seeds):
        self.split = split
        self.schema = schema
        self.writer = writer
        self.suspects = suspects_writer
        self.on_bad_row = on_bad_row
        self.max_seeds = max_seeds
        self.ids = IdHashSet()
        self.written = 0
        self.held = 0

    @property
    def full(self) -> bool:
        return self.max_seeds is not None and self.written >= self.max_seeds

    def bad(self, report: SourceReport, where: str, bad: BadRow) -> None:
        field_part = f", field '{bad.field_name}'" if bad.field_name else ""
        message = f"{where}{field_part}: {bad.detail}"
        if self.on_bad_row == "error":
            raise SeedError(f"bad seed row in split '{self.split}': {message}")
        report.skip(bad.reason, message)

    def write(self, source: dict, report: SourceReport, columns: dict[str, list | pa.Array]):
        """Write one batch of valid rows (columns: the kind's fields plus `id` and `row`)."""
        rows = len(columns["row"])
        if not rows:
            return
        kind = source["kind"]
        required = KINDS[kind][0]
        ids = columns["id"]
        ids = ids.to_pylist() if isinstance(ids, pa.Array) else ids
        if None in ids:
            fields = [
                c.to_pylist() if isinstance(c, pa.Array) else c
                for c in (columns[k] for k in required)
            ]
            ids = [
                i if i is not None else stable_hash(*(f[r] for f in fields), length=12)
                for r, i in enumerate(ids)
            ]
        prefix = f"{source['name']}:"
        seed_ids = [prefix + i for i in ids]
        data = {
            "seed_id": pa.array(seed_ids, pa.string()),
            "source": pa.array([source["name"]] * rows, pa.string()),
            "kind": pa.array([kind] * rows, pa.string()),
            "row": pa.array(columns["row"], pa.int64()),
        }
        for name in self.schema.names[len(BASE_COLUMNS) :]:
            values = columns.get(name)
            data[name] = (
                pa.nulls(rows, pa.string()) if values is None else pa.array(values, pa.string())
            )
        table = pa.table(data, schema=self.schema)
        seen = self.ids.add(hash_ids(seed_ids))
        if seen.any():
            self.suspects.write_table(table.filter(pa.array(seen)))
            self.held += int(seen.sum())
            table = table.filter(pa.array(~seen))
        if self.max_seeds is not None and self.written + table.num_rows > self.max_seeds:
            table = table.slice(0, self.max_seeds - self.written)
        self.writer.write_table(table, row_group_size=BATCH_ROWS)
        self.written += table.num_rows
        report.rows_kept += table.num_rows


def _read_source(source: dict, out: _SplitWriter, report: SourceReport, base_dir, batch_rows):
    kind, fields = source["kind"], source.get("fields", {})
    names = KINDS[kind][0] + KINDS[kind][1]
    if source["format"] in ("parquet", "hf"):
        batches = (
            _hf_batches(source, batch_rows)
            if source["format"] == "hf"
            else _parquet_batches(source_path(source, base_dir), batch_rows)
        )
        for first, batch in batches:
            if out.full:
                return
            rows = np.arange(first, first + batch.num_rows)
            _write_arrow_batch(source, out, report, batch, rows)
        return
    if source["format"] == "jsonl":
        wanted = list(dict.fromkeys(fields.get(name, name) for name in names))
        for first, chunk in _jsonl_chunks(source_path(source, base_dir), batch_rows):
            if out.full:
                return
            batch = _arrow_json_batch(chunk, wanted)
            if batch is not None:
                rows = np.arange(first, first + len(chunk))
                _write_arrow_batch(source, out, report, batch, rows)
            else:
                _write_rows(source, out, report, list(_parsed_lines(chunk, first)))
        return
    for batch in _batched(_csv_rows(source_path(source, base_dir)), batch_rows):
        if out.full:
            return
        _write_rows(source, out, report, batch)


def _write_rows(source: dict, out: _SplitWriter, report: SourceReport, batch: list) -> None:
    """Validate and write a batch of (row number, raw row or BadRow)."""
    kind, fields = source["kind"], source.get("fields", {})
    names = KINDS[kind][0] + KINDS[kind][1]
    # JSON and CSV rows hold only str, None, numbers, bools, lists and dicts: where a
    # batch's values are all strings or missing, it is checked column-wise like parquet
    # (~2x faster); otherwise row by row, which names each bad row exactly.
    strings = _string_batch(batch, kind, fields)
    if strings is not None:
        numbers = np.fromiter((row_no for row_no, _ in batch), np.int64, len(batch))
        _write_arrow_batch(source, out, report, strings, numbers)
        return
    columns: dict[str, list] = {name: [] for name in names}
    columns["row"] = []
    for row_no, raw in batch:
        report.rows_read += 1
        try:
            seed = normalize_row(raw, kind, fields)
        except BadRow as bad:
            out.bad(report, f"{report.location}: row {row_no}", bad)
            continue
        for name in names:
            columns[name].append(seed[name])
        columns["row"].append(row_no)
    out.write(source, report, columns)


def _string_batch(batch: list, kind: str, fields: dict[str, str]) -> pa.RecordBatch | None:
    """The kind's source columns of a batch of (row number, raw row) as string arrays; None
    when a row is not an object or a value is neither a string nor missing."""
    if not all(type(raw) is dict for _, raw in batch):
        return None
    required, optional = KINDS[kind]
    columns = dict.fromkeys(fields.get(name, name) for name in required + optional)
    try:
        arrays = [pa.array([raw.get(c) for _, raw in batch], pa.string()) for c in columns]
    except (pa.ArrowException, UnicodeEncodeError):  # a non-string, or a lone surrogate
        return None
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))


def _write_arrow_batch(
    source: dict, out: _SplitWriter, report: SourceReport, batch: pa.RecordBatch, rows: np.ndarray
) -> None:
    """Validate a batch column-wise, report its bad rows, write the others (`rows`: the
    source's row numbers of the batch)."""
    columns, bad = _normalize_arrow(batch, source["kind"], source.get("fields", {}))
    report.rows_read += batch.num_rows
    for i, problem in bad:
        out.bad(report, f"{report.location}: row {int(rows[i])}", problem)
    if bad:
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[[i for i, _ in bad]] = False
        mask = pa.array(keep)
        columns = {k: v.filter(mask) for k, v in columns.items()}
        rows = rows[keep]
    columns["row"] = rows
    out.write(source, report, columns)


def _settle_suspects(
    main: Path, suspects: Path, locations: dict[str, str], out: _SplitWriter, reports: dict
) -> pa.Table | None:
    """Decide every held-back row: a duplicate (counted or an error) or a hash collision (kept,
    returned). Reads the written ids once, column only."""
    held = pq.read_table(suspects)
    wanted = np.unique(hash_ids(held.column("seed_id").to_pylist()))
    earlier: dict[str, str] = {}  # seed id -> where it was first used, for the suspects' hashes
    for batch in iter_parquet(main, 1 << 17, columns=["seed_id", "source", "row"]):
        ids = batch.column(0).to_pylist()
        hit = np.flatnonzero(np.isin(hash_ids(ids), wanted))
        sources, rows = batch.column(1).to_pylist(), batch.column(2).to_pylist()
        for i in hit:
            earlier[ids[i]] = f"{locations[sources[i]]}: row {rows[i]}"
    keep = []
    for i, (seed_id, source, row) in enumerate(
        zip(*(held.column(c).to_pylist() for c in ("seed_id", "source", "row")), strict=True)
    ):
        where = f"{locations[source]}: row {row}"
        report = reports[source]
        if seed_id in earlier:
            local = seed_id[len(source) + 1 :]
            id_field = report.fields.get("id", "id")
            out.bad(
                report.report,
                where,
                BadRow(
                    "duplicate_id",
                    id_field,
                    f"seed id '{local}' already used at {earlier[seed_id]}",
                ),
            )
            continue
        # Same hash, different id: a real new seed.
        earlier[seed_id] = where
        keep.append(i)
    if not keep:
        return None
    kept = held.take(pa.array(keep, pa.int64()))
    if out.max_seeds is not None:
        kept = kept.slice(0, max(0, out.max_seeds - out.written))
    for source in kept.column("source").to_pylist():
        reports[source].report.rows_kept += 1
    return kept


@dataclass
class _Source:
    report: SourceReport
    fields: dict


def write_split_seeds(
    split: str,
    sources: list[dict],
    out: str | Path,
    report_path: str | Path | None = None,
    on_bad_row: str = "skip",
    max_seeds: int | None = None,
    base_dir: Path | None = None,
    batch_rows: int = BATCH_ROWS,
) -> dict:
    """Read, validate and normalize every source of a split into one seed parquet (written
    atomically, one row group per `BATCH_ROWS` rows) and its report (written even when no row
    is usable, so the skipped rows can be looked up)."""
    columns = seed_columns(sources)
    schema = seed_schema(columns)
    reports: dict[str, _Source] = {}
    for source in sources:
        reports[source["name"]] = _Source(
            SourceReport(source["name"], source_location(source)), source.get("fields", {})
        )
    locations = {name: s.report.location for name, s in reports.items()}
    out = Path(out)
    with atomic_path(out) as tmp, tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        suspects_path = Path(scratch) / "suspects.parquet"
        with (
            pq.ParquetWriter(tmp, schema, **SEED_FILE_OPTIONS) as writer,
            pq.ParquetWriter(suspects_path, schema, **SEED_FILE_OPTIONS) as suspects,
        ):
            split_writer = _SplitWriter(split, schema, writer, suspects, on_bad_row, max_seeds)
            for source in sources:
                _read_source(
                    source, split_writer, reports[source["name"]].report, base_dir, batch_rows
                )
        collisions = None
        if split_writer.held:
            collisions = _settle_suspects(tmp, suspects_path, locations, split_writer, reports)
        if collisions is not None:
            log.warning("%d seed id hash collision(s): kept, after the other rows", len(collisions))
            merged = Path(scratch) / "merged.parquet"
            with pq.ParquetWriter(merged, schema, **SEED_FILE_OPTIONS) as writer:
                for batch in iter_parquet(tmp, BATCH_ROWS):
                    writer.write_batch(batch, row_group_size=BATCH_ROWS)
                writer.write_table(collisions, row_group_size=BATCH_ROWS)
            merged.replace(tmp)
            split_writer.written += collisions.num_rows
        total = split_writer.written
        report = {
            "split": split,
            "seeds": total,
            "max_seeds": max_seeds,
            "stopped_at_max_seeds": max_seeds is not None and total >= max_seeds,
            "sources": [s.report.as_dict() for s in reports.values()],
        }
        if report_path is not None:
            write_json(report_path, report)
        if not total:
            reasons = Counter()
            for s in reports.values():
                reasons.update(s.report.skipped)
            detail = ", ".join(f"{k}: {n}" for k, n in sorted(reasons.items())) or "no rows"
            raise SeedError(
                f"split '{split}': no usable seed rows in "
                + ", ".join(locations.values())
                + f" ({detail}"
                + (f"; see {report_path}" if report_path is not None else "")
                + ")"
            )
    return report


def read_split_seeds(
    split: str,
    sources: list[dict],
    on_bad_row: str = "skip",
    max_seeds: int | None = None,
    base_dir: Path | None = None,
    batch_rows: int = BATCH_ROWS,
) -> tuple[pa.Table, dict]:
    """`write_split_seeds` into memory: for tests and small tools, not for split-scale data."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "seeds.parquet"
        report = write_split_seeds(
            split, sources, path, None, on_bad_row, max_seeds, base_dir, batch_rows
        )
        table = pq.read_table(path)
    return table, report


def seeds_stage(split: str, settings: dict, out: str | Path, report_path: str | Path) -> dict:
    """The `seeds` stage as the workflow runs it (settings: Layout.seeds_settings): the split's
    seed file and report, with every skipped row's reason logged."""
    report = write_split_seeds(
        split,
        settings["sources"],
        out,
        report_path,
        on_bad_row=settings.get("on_bad_row", "skip"),
        max_seeds=seed_cap(settings.get("max_seeds", "all")),
    )
    for source in report["sources"]:
        if source["rows_skipped"]:
            log.warning(
                "%s: skipped %d bad row(s): %s",
                source["location"],
                source["rows_skipped"],
                source["skipped_by_reason"],
            )
            for example in source["examples"]:
                log.warning("  %s", example)
    return report


# --- command line ------------------------------------------------------------------------------


def _seeds_command(args) -> None:
    seeds_stage(args.split, args.settings, args.out, args.report)


COMMANDS = (
    Command(
        "seeds",
        "read, validate and normalize a split's seed sources",
        _seeds_command,
        {
            "--split": SPLIT,
            "--settings": {
                "required": True,
                "type": settings_arg(
                    sources="splits.*.sources",
                    on_bad_row="seeds.on_bad_row",
                    max_seeds="splits.*.max_seeds",
                ),
                "help": 'JSON: {"sources": [...], "on_bad_row": "skip", "max_seeds": "all"}',
            },
            "--out": path_arg("the split's seed parquet"),
            "--report": path_arg("the split's seed report (JSON)"),
        },
    ),
)
