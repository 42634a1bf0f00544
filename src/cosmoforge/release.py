"""Collect a split's generation shards, count tokens, filter, and write the released parquet.

`collect_split` is the seam where later stages (dedup, decontamination) plug in: it produces the
filtered table with every provenance column, and `release_split` writes the public columns
first, then provenance, in the layout `datasets.load_dataset("parquet", data_dir=...)` reads.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .generate import GENERATION_SCHEMA
from .io import read_parquet, write_json, write_parquet
from .tokens import TOKENIZER_NAME, count_tokens

RELEASE_COLUMNS = ["prompt", "text", "seed_data", "token_length", "format", "audience"]
PROVENANCE_COLUMNS = [
    "sample_id",
    "split",
    "seed_id",
    "template_id",
    "template_version",
    "variant",
    "topic",
    "topic_injected",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "model",
    "model_revision",
    "engine",
    "engine_version",
    "sampling",
    "request_seed",
]


def collect_split(
    split: str,
    shard_paths: list[str | Path],
    output: str | Path,
    report_path: str | Path,
    min_token_length: int,
    drop_truncated: bool = False,
) -> dict:
    tables = [read_parquet(p) for p in shard_paths]
    table = pa.concat_tables(tables) if tables else GENERATION_SCHEMA.empty_table()
    texts = table.column("text").to_pylist()
    token_length = count_tokens([t or "" for t in texts])
    table = table.append_column("token_length", pa.array(token_length, pa.int32()))
    reasons = []
    for row_error, finish, length in zip(
        table.column("error").to_pylist(),
        table.column("finish_reason").to_pylist(),
        token_length,
        strict=True,
    ):
        if row_error:
            reasons.append("engine_error")
        elif drop_truncated and finish == "length":
            reasons.append("truncated")
        elif length < min_token_length:
            reasons.append("too_short")
        else:
            reasons.append(None)
    keep = pa.array([r is None for r in reasons])
    kept = table.filter(keep)
    ids = kept.column("sample_id")
    if len(pc.unique(ids)) != len(ids):
        raise RuntimeError(f"split '{split}': duplicate sample ids across shards")
    counts = Counter(r for r in reasons if r)
    report = {
        "split": split,
        "generated": table.num_rows,
        "kept": kept.num_rows,
        "left_out": dict(sorted(counts.items())),
        "min_token_length": min_token_length,
        "drop_truncated": drop_truncated,
        "truncated_kept": int(
            sum(
                1
                for r, f in zip(reasons, table.column("finish_reason").to_pylist(), strict=True)
                if r is None and f == "length"
            )
        ),
        "tokens": int(pc.sum(kept.column("token_length")).as_py() or 0),
        "tokenizer": TOKENIZER_NAME,
        "bos_counted": False,
    }
    write_json(report_path, report)
    write_parquet(output, kept)
    return report


def release_split(collected: str | Path, output: str | Path) -> int:
    table = read_parquet(collected)
    table = table.select(RELEASE_COLUMNS + PROVENANCE_COLUMNS)
    write_parquet(output, table)
    return table.num_rows
