"""A split's seed file: its columns, the writer that turns checked rows into batches of it while
holding back rows whose id hash was seen before, and the settling of those held-back rows
(duplicates or hash collisions; see the package's docstring). Also each source's report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.contracts import KINDS
from cosmoforge.core.errors import SeedError
from cosmoforge.core.io import iter_parquet, stable_hash
from cosmoforge.stages.seeds.gates import SeedGates, filtered_columns
from cosmoforge.stages.seeds.rows import BadRow, IdHashSet, hash_ids

# Columns of the seed table besides the kinds' fields.
BASE_COLUMNS = ("seed_id", "source", "kind", "row")
MAX_EXAMPLES = 20
# Rows per read batch and per row group of the seed file (readers downstream read row groups).
BATCH_ROWS = 4096
# The seed file is an intermediate read once or twice: snappy writes 3-4x faster than zstd
# (measured on 600 MB of web-like text: 1.2 s vs 4.3 s) for about twice the size; only the
# source and kind columns repeat enough for a dictionary.
SEED_FILE_OPTIONS = {"compression": "snappy", "use_dictionary": ["source", "kind"]}


@dataclass
class SourceReport:
    name: str
    location: str
    rows_read: int = 0
    rows_kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    # Per optional field the source maps (`fields`): how many kept rows had a value for it.
    mapped_values: Counter = field(default_factory=Counter)
    # Valid rows the quality gates (gates.py) or the duplicate checks left out, by reason: not
    # bad rows, so never an error, but counted like them. Rows a repair changed, by repair; and
    # the languages the language gate left out.
    gated: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)

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
            "rows_gated": sum(self.gated.values()),
            "gated_by_reason": dict(sorted(self.gated.items())),
            "repaired_by_reason": dict(sorted(self.repaired.items())),
            "languages_left_out": dict(self.languages.most_common()),
        }


def seed_columns(sources: list[dict]) -> list[str]:
    columns = list(BASE_COLUMNS)
    for kind in sorted({s["kind"] for s in sources}):
        required, optional = KINDS[kind]
        columns += [c for c in required + optional if c != "id" and c not in columns]
    return columns


def seed_schema(columns: list[str]) -> pa.Schema:
    return pa.schema([(c, pa.int64() if c == "row" else pa.string()) for c in columns])


# The texts' own name for the same 64-bit hash as the ids' (the ids' one is swapped for a weak
# hash in a test of exact id checks, which must not make texts collide too).
hash_texts = hash_ids


def text_hashes(kind: str, columns: dict) -> np.ndarray:
    """A seed's text as the duplicate checks see it: its kind's required fields, case folded
    and with runs of white space as one space, hashed (64 bits)."""
    fields = [
        c.to_pylist() if isinstance(c, pa.Array) else list(c)
        for c in (columns[name] for name in KINDS[kind][0])
    ]
    keys = [
        "\x1f".join(" ".join(v.casefold().split()) for v in row)
        for row in zip(*fields, strict=True)
    ]
    return hash_texts(keys)


class SplitWriter:
    """Rows in, batches of the seed schema out to one parquet writer; duplicates held back."""

    def __init__(self, split, schema, writer, suspects_writer, on_bad_row, max_seeds, gates=None):
        self.split = split
        self.gates = gates or SeedGates()
        self.schema = schema
        self.writer = writer
        self.suspects = suspects_writer
        self.on_bad_row = on_bad_row
        self.max_seeds = max_seeds
        self.ids = IdHashSet()
        # Hashes of every kept seed's text (its kind's required fields, normalized): the same
        # document from two sources of the split, or twice in one, is kept once.
        self.texts = IdHashSet()
        # (split, its texts' hashes) of the splits before this one in its across_splits group.
        self.elsewhere: list[tuple[str, IdHashSet]] = []
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

    def keep_out_seeds_of(self, split: str, path: Path) -> int:
        """Leave out of this split every seed whose text `split`'s seed file holds (a split
        earlier in its `seeds.across_splits` group keeps it); returns that file's seed count.
        Memory: its texts' 64-bit hashes, as for this split's own."""
        texts = IdHashSet()
        columns = sorted({c for required, _ in KINDS.values() for c in required})
        present = [c for c in columns if c in pq.read_schema(path).names]
        count = 0
        for batch in iter_parquet(path, 1 << 16, columns=["kind", *present]):
            kinds = batch.column("kind").to_numpy(zero_copy_only=False)
            for kind in np.unique(kinds):
                rows = pa.array(kinds == kind)
                texts.add(text_hashes(kind, {c: batch.column(c).filter(rows) for c in present}))
            count += batch.num_rows
        self.elsewhere.append((split, texts))
        return count

    def _drop_repeated_texts(self, kind: str, columns: dict, gated: Counter) -> dict:
        """The columns without the seeds whose normalized text an earlier split of the group
        kept (counted as duplicate_in_<split>) or an earlier seed of this split had (counted as
        duplicate_text; the first one in config order is kept). Texts are compared by a 64-bit
        hash: two different texts share one with a chance of about 3 in a million at 10M
        seeds, which would drop one seed."""
        hashes = text_hashes(kind, columns)
        drop = np.zeros(len(hashes), bool)
        for split, texts in self.elsewhere:
            found = texts.contains(hashes) & ~drop
            if found.any():
                gated[f"duplicate_in_{split}"] += int(found.sum())
                drop |= found
        seen = self.texts.add(hashes[~drop])
        if seen.any():
            gated["duplicate_text"] += int(seen.sum())
            drop[np.flatnonzero(~drop)[seen]] = True
        return filtered_columns(columns, ~drop) if drop.any() else columns

    @staticmethod
    def _count_mapped(source: dict, report: SourceReport, columns: dict) -> None:
        optional = KINDS[source["kind"]][1]
        for name in source.get("fields", {}):
            if name in optional:
                values = columns[name]
                report.mapped_values[name] += (
                    len(values) - values.null_count
                    if isinstance(values, pa.Array)
                    else sum(v is not None for v in values)
                )

    def write(self, source: dict, report: SourceReport, columns: dict[str, list | pa.Array]):
        """Write one batch of valid rows (columns: the kind's fields plus `id` and `row`), less
        those the gates and the repeated-text check leave out."""
        kind = source["kind"]
        columns = self.gates.apply(kind, columns, report)
        columns = self._drop_repeated_texts(kind, columns, report.gated)
        rows = len(columns["row"])
        if not rows:
            return
        required = KINDS[kind][0]
        ids = columns["id"]
        ids = ids.to_pylist() if isinstance(ids, pa.Array) else ids
        self._count_mapped(source, report, columns)
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


def settle_suspects(
    main: Path, suspects: Path, locations: dict[str, str], out: SplitWriter, reports: dict
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


def check_mapped_fields(source: dict, report: SourceReport) -> None:
    """An optional field the source maps onto a column that no kept row has is a mistyped
    column name, not data without it: one line naming the source and the field. (A required
    field's rows are each left out as missing_field, with the column named.)"""
    optional = KINDS[source["kind"]][1]
    for name, column in source.get("fields", {}).items():
        if name in optional and report.rows_kept and not report.mapped_values[name]:
            raise SeedError(
                f"{report.location}: fields.{name}: column '{column}' is missing or empty in "
                f"all {report.rows_kept} usable rows of source '{source['name']}'; name a "
                "column the source has (nested fields such as 'meta.url' are not looked into), "
                f"or remove fields.{name}"
            )
