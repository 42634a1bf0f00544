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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.contracts import KINDS
from cosmoforge.core.declare import SPLIT, Command, path_arg, split_and_path
from cosmoforge.core.errors import SeedError
from cosmoforge.core.io import atomic_path, iter_parquet, write_json
from cosmoforge.core.settings import SeedSettings
from cosmoforge.stages.seeds.gates import SeedGates
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
    _normalize_arrow,
    normalize_row,
)
from cosmoforge.stages.seeds.seedfile import (
    BASE_COLUMNS,
    BATCH_ROWS,
    SEED_FILE_OPTIONS,
    SourceReport,
    SplitWriter,
    check_mapped_fields,
    seed_columns,
    seed_schema,
    settle_suspects,
)

__all__ = [
    "BASE_COLUMNS",
    "read_split_seeds",
    "seed_cap",
    "seeds_stage",
    "source_location",
    "write_split_seeds",
]

log = logging.getLogger(__name__)


def seed_cap(max_seeds: int | str | None) -> int | None:
    """A split's `max_seeds` as a number, or None for `all` (every seed)."""
    return None if max_seeds in ("all", None) else int(max_seeds)


def _read_source(source: dict, out: SplitWriter, report: SourceReport, base_dir, batch_rows):
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


def _write_rows(source: dict, out: SplitWriter, report: SourceReport, batch: list) -> None:
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
    source: dict, out: SplitWriter, report: SourceReport, batch: pa.RecordBatch, rows: np.ndarray
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
    gates: SeedGates | None = None,
    yields_to: list[tuple[str, Path]] = (),
) -> dict:
    """Read, validate and normalize every source of a split into one seed parquet (written
    atomically, one row group per `BATCH_ROWS` rows) and its report (written even when no row
    is usable, so the skipped rows can be looked up). `gates`: the quality gates (none if
    None); `yields_to`: (split, seed file) of the splits whose seeds this one leaves out."""
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
            split_writer = SplitWriter(
                split, schema, writer, suspects, on_bad_row, max_seeds, gates
            )
            for other, path in yields_to:
                n = split_writer.keep_out_seeds_of(other, Path(path))
                log.info("leaving out the %d seed texts of split %s (%s)", n, other, path)
            for source in sources:
                source_report = reports[source["name"]].report
                _read_source(source, split_writer, source_report, base_dir, batch_rows)
                check_mapped_fields(source, source_report)
        collisions = None
        if split_writer.held:
            collisions = settle_suspects(tmp, suspects_path, locations, split_writer, reports)
        if collisions is not None:
            log.warning("%d seed id hash collision(s): kept, after the other rows", len(collisions))
            merged = Path(scratch) / "merged.parquet"
            with pq.ParquetWriter(merged, schema, **SEED_FILE_OPTIONS) as writer:
                for batch in iter_parquet(tmp, BATCH_ROWS):
                    writer.write_batch(batch, row_group_size=BATCH_ROWS)
                writer.write_table(collisions, row_group_size=BATCH_ROWS)
            merged.replace(tmp)
            split_writer.written += collisions.num_rows
        report = _split_report(split, split_writer.written, max_seeds, reports)
        if report_path is not None:
            write_json(report_path, report)
        if not report["seeds"]:
            raise _no_usable_rows(split, reports, report_path)
    return report


def _split_report(split: str, total: int, max_seeds: int | None, reports: dict) -> dict:
    return {
        "split": split,
        "seeds": total,
        "max_seeds": max_seeds,
        "stopped_at_max_seeds": max_seeds is not None and total >= max_seeds,
        "sources": [s.report.as_dict() for s in reports.values()],
    }


def _no_usable_rows(split: str, reports: dict, report_path: str | Path | None) -> SeedError:
    """The error of a split without a single usable row: its sources and why rows were skipped."""
    reasons = Counter()
    for s in reports.values():
        reasons.update(s.report.skipped)
        reasons.update(s.report.gated)
    detail = ", ".join(f"{k}: {n}" for k, n in sorted(reasons.items())) or "no rows"
    return SeedError(
        f"split '{split}': no usable seed rows in "
        + ", ".join(s.report.location for s in reports.values())
        + f" ({detail}"
        + (f"; see {report_path}" if report_path is not None else "")
        + ")"
    )


def read_split_seeds(
    split: str,
    sources: list[dict],
    on_bad_row: str = "skip",
    max_seeds: int | None = None,
    base_dir: Path | None = None,
    batch_rows: int = BATCH_ROWS,
    gates: SeedGates | None = None,
    yields_to: list[tuple[str, Path]] = (),
) -> tuple[pa.Table, dict]:
    """`write_split_seeds` into memory: for tests and small tools, not for split-scale data."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "seeds.parquet"
        report = write_split_seeds(
            split,
            sources,
            path,
            None,
            on_bad_row,
            max_seeds,
            base_dir,
            batch_rows,
            gates,
            yields_to,
        )
        table = pq.read_table(path)
    return table, report


def seed_gates(settings: SeedSettings) -> SeedGates:
    return SeedGates(
        min_chars=settings.min_chars,
        max_chars=settings.max_chars,
        repair_text=settings.repair_text,
        html_to_text=tuple(settings.html_to_text),
        languages=settings.languages,
        language_min_confidence=settings.language_min_confidence,
    )


def seeds_stage(
    split: str,
    settings: SeedSettings | dict,
    out: str | Path,
    report_path: str | Path,
    kept_by: dict[str, str | Path] | None = None,
) -> dict:
    """The `seeds` stage as the workflow runs it: the split's seed file and report, with every
    skipped row's reason logged. `kept_by`: the seed file of each split in
    `settings.yields_to`."""
    settings = SeedSettings.of(settings)
    kept_by = kept_by or {}
    if sorted(kept_by) != sorted(settings.yields_to):
        raise SeedError(
            f"split '{split}': --kept-by gives the seed files of "
            f"{sorted(kept_by) or 'no split'}, but its settings' yields_to is "
            f"{sorted(settings.yields_to) or 'empty'}"
        )
    report = write_split_seeds(
        split,
        settings.sources,
        out,
        report_path,
        on_bad_row=settings.on_bad_row,
        max_seeds=seed_cap(settings.max_seeds),
        gates=seed_gates(settings),
        yields_to=[(other, Path(kept_by[other])) for other in settings.yields_to],
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
        if source["rows_gated"]:
            log.warning(
                "%s: left out %d seed(s) by the seed gates and duplicate checks: %s",
                source["location"],
                source["rows_gated"],
                source["gated_by_reason"],
            )
        if source["repaired_by_reason"]:
            log.info("%s: repaired: %s", source["location"], source["repaired_by_reason"])
    return report


# --- command line ------------------------------------------------------------------------------


def _seeds_command(args) -> None:
    kept_by = dict(args.kept_by)
    seeds_stage(args.split, args.settings, args.out, args.report, kept_by)


COMMANDS = (
    Command(
        "seeds",
        "read, validate and normalize a split's seed sources",
        _seeds_command,
        {
            "--split": SPLIT,
            "--settings": SeedSettings.argument(),
            "--out": path_arg("the split's seed parquet"),
            "--report": path_arg("the split's seed report (JSON)"),
            "--kept-by": {
                "nargs": "*",
                "default": [],
                "type": split_and_path,
                "metavar": "SPLIT=PATH",
                "help": "the seed file of each split in the settings' yields_to",
            },
        },
    ),
)
