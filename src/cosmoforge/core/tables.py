"""The tables that pass between stages: the seed file (read in row ranges), the prompt shard and
the generated shard. A stage that reads another stage's table takes its schema from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.io import read_input_table, write_parquet


def count_rows(path: str | Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def iter_seed_rows(
    path: str | Path, start: int, stop: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Rows [start, stop) of a seed file, as batches, reading only the row groups they span."""
    parquet = pq.ParquetFile(path)
    meta = parquet.metadata
    offset = 0
    for group in range(meta.num_row_groups):
        size = meta.row_group(group).num_rows
        lo, hi = max(start, offset), min(stop, offset + size)
        if lo < hi:
            table = parquet.read_row_group(group, columns=columns)
            yield from table.slice(lo - offset, hi - lo).to_batches()
        offset += size
        if offset >= stop:
            break


PROMPT_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("split", pa.string()),
        ("shard", pa.int32()),
        ("seed_id", pa.string()),
        ("seed_data", pa.string()),
        ("format", pa.string()),
        ("audience", pa.string()),
        ("template_id", pa.string()),
        ("template_version", pa.int32()),
        ("variant", pa.string()),
        ("topic", pa.string()),
        ("topic_injected", pa.bool_()),
        ("topic_cluster", pa.int32()),
        ("prompt", pa.string()),
    ]
)


def write_prompt_shard(rows: list[dict], path: str | Path) -> None:
    """One shard's prompt file from rows in memory (tests and small tools)."""
    write_parquet(path, pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA))


def read_prompt_shard(path: str | Path) -> pa.Table:
    return read_input_table(path, schema=PROMPT_SCHEMA)


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
