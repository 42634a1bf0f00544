"""Release one generation shard: count tokens, filter, write its file of the released split.

Each shard of a split becomes one file in the hub's layout
(`release/<split>/train-00007-of-00310.parquet`), which `datasets.load_dataset("parquet",
data_dir="release/<split>")` reads as one split. The public columns come first, then provenance.
Beside each file a small statistics file (counts, token totals, distributions, a token-length
histogram) lets the card be built without reading a single text.

The shard is streamed in batches (tokenized a batch at a time), so memory is bounded by a batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.declare import SPLIT, Command, config_value_arg, path_arg, settings_arg
from cosmoforge.core.io import atomic_path, iter_parquet, reading, write_json, write_parquet
from cosmoforge.core.tables import GENERATION_SCHEMA
from cosmoforge.core.tokens import TOKENIZER_NAME, count_tokens
from cosmoforge.stages.quality import FLAGS, Diversity, QualityFlags, TextKeys, default_quality

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
    "topic_cluster",
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
FLAG_COLUMNS = [f"flag_{flag}" for flag in FLAGS]
RELEASE_SCHEMA = pa.schema(
    [
        pa.field("token_length", pa.int32()) if c == "token_length" else GENERATION_SCHEMA.field(c)
        for c in RELEASE_COLUMNS + PROVENANCE_COLUMNS
    ]
    + [pa.field(c, pa.bool_()) for c in FLAG_COLUMNS]
)
LEFT_OUT_SCHEMA = pa.schema([("sample_id", pa.string()), ("reason", pa.string())])
DISTRIBUTIONS = ("format", "audience", "seed_data", "template_id")
BATCH_ROWS = 2048


class _ShardTally:
    """The statistics of one shard's release, gathered batch by batch: what was generated
    (flags, diversity, per template) and what was kept (tokens, lengths, distributions)."""

    def __init__(self, split: str, output: str | Path, checker: QualityFlags):
        self.split, self.file, self.checker = split, Path(output).name, checker
        self.diversity = Diversity()
        self.flag_counts: Counter = Counter()
        self.by_template: dict[str, Counter] = {}
        self.left_out: Counter = Counter()
        self.left_out_rows: dict[str, list] = {"sample_id": [], "reason": []}
        self.lengths: Counter = Counter()
        self.distributions = {column: Counter() for column in DISTRIBUTIONS}
        self.revisions: set[str] = set()
        self.seen_ids: set[str] = set()
        self.generated = self.kept = self.truncated_kept = self.tokens = 0

    def add_generated(self, batch: pa.RecordBatch, flags: list, reasons: list, keys: list) -> None:
        texts = batch.column("text").to_pylist()
        errors = batch.column("error").to_pylist()
        for template, row_flags, error, text, seed_id, text_keys in zip(
            batch.column("template_id").to_pylist(),
            flags,
            errors,
            texts,
            batch.column("seed_id").to_pylist(),
            keys,
            strict=True,
        ):
            if error:
                continue
            self.diversity.add(template, text or "")
            self.diversity.add_variant(seed_id, text or "", text_keys)
            counts = self.by_template.setdefault(template, Counter())
            counts["rows"] += 1
            counts.update(row_flags)
            self.flag_counts.update(row_flags)
        self.generated += batch.num_rows
        self.left_out.update(r for r in reasons if r)
        for sample_id, reason in zip(batch.column("sample_id").to_pylist(), reasons, strict=True):
            if reason:
                self.left_out_rows["sample_id"].append(sample_id)
                self.left_out_rows["reason"].append(reason)

    def add_kept(self, table: pa.Table, shard_path, lengths: list[int], finish: list) -> None:
        """`table`: the kept rows; `lengths` and `finish` of the same rows."""
        ids = table.column("sample_id").to_pylist()
        if self.seen_ids.intersection(ids) or len(set(ids)) != len(ids):
            raise RuntimeError(f"{shard_path}: duplicate sample ids in the shard")
        self.seen_ids.update(ids)
        self.kept += table.num_rows
        self.tokens += sum(lengths)
        self.lengths.update(lengths)
        self.truncated_kept += sum(1 for f in finish if f == "length")
        for column in DISTRIBUTIONS:
            self.distributions[column].update(table.column(column).to_pylist())
        self.revisions.update(r for r in table.column("model_revision").to_pylist() if r)

    def stats(self, min_token_length: int, drop_truncated: bool) -> dict:
        return {
            "split": self.split,
            "file": self.file,
            "generated": self.generated,
            "kept": self.kept,
            "left_out": dict(sorted(self.left_out.items())),
            "truncated_kept": self.truncated_kept,
            "tokens": self.tokens,
            "token_length_counts": {str(n): c for n, c in sorted(self.lengths.items())},
            "distributions": {c: dict(sorted(v.items())) for c, v in self.distributions.items()},
            "model_revisions": sorted(self.revisions),
            "min_token_length": min_token_length,
            "drop_truncated": drop_truncated,
            "quality_drop": sorted(self.checker.drop),
            # Over the generated rows (engine errors aside), before any is left out.
            "flags": {f: self.flag_counts[f] for f in FLAGS},
            # Openings and distinct n-grams per template, over the generated texts (before
            # anything is left out): what the model produced for each prompt wording.
            "diversity": self.diversity.stats(),
            # How alike the texts of one seed's prompts are (exact word 5-gram Jaccard per pair).
            "variant_similarity": self.diversity.variant_similarity(),
            "flags_by_template": {
                t: {"rows": c["rows"], **{f: c[f] for f in FLAGS}}
                for t, c in sorted(self.by_template.items())
            },
            "tokenizer": TOKENIZER_NAME,
            "bos_counted": False,
        }


def _flagged(batch: pa.RecordBatch, checker: QualityFlags):
    """Per row of a generated batch: its token length, n-gram keys, quality flags and the reason
    it is left out (None: kept). The flags and the variant similarity share the keys."""
    texts = batch.column("text").to_pylist()
    token_length = count_tokens([t or "" for t in texts])
    finish = batch.column("finish_reason").to_pylist()
    errors = batch.column("error").to_pylist()
    keys = [None if e else TextKeys(t or "") for t, e in zip(texts, errors, strict=True)]
    flags = [
        [] if e else checker.of(t or "", f, n, k)
        for t, f, n, e, k in zip(texts, finish, token_length, errors, keys, strict=True)
    ]
    reasons = [
        "engine_error" if e else checker.drop_reason(fl)
        for e, fl in zip(errors, flags, strict=True)
    ]
    return token_length, keys, flags, reasons


def _release_table(batch: pa.RecordBatch, token_length: list, flags: list, keep: list) -> pa.Table:
    """The kept rows of a batch in the release's columns: token_length and the flag columns
    added."""
    table = pa.Table.from_batches([batch]).append_column(
        "token_length", pa.array(token_length, pa.int32())
    )
    for flag, column in zip(FLAGS, FLAG_COLUMNS, strict=True):
        table = table.append_column(column, pa.array([flag in fl for fl in flags], pa.bool_()))
    return table.filter(pa.array(keep)).select(RELEASE_SCHEMA.names)


def release_shard(
    split: str,
    shard_path: str | Path,
    output: str | Path,
    stats_path: str | Path,
    min_token_length: int,
    drop_truncated: bool = False,
    quality: dict | None = None,
    left_out_path: str | Path | None = None,
) -> dict:
    """Release one (deduplicated, decontaminated) shard file, streamed a batch at a time;
    `release_batches` says what is written."""
    with reading(shard_path):
        return release_batches(
            split,
            iter_parquet(shard_path, BATCH_ROWS),
            output,
            stats_path,
            min_token_length,
            drop_truncated=drop_truncated,
            quality=quality,
            left_out_path=left_out_path,
            source=shard_path,
        )


def release_batches(
    split: str,
    batches: Iterable[pa.RecordBatch],
    output: str | Path,
    stats_path: str | Path,
    min_token_length: int,
    drop_truncated: bool = False,
    quality: dict | None = None,
    left_out_path: str | Path | None = None,
    source: str | Path = "",
) -> dict:
    """Write the released rows of a shard's batches (in the generation schema), and its
    statistics. Every row gets its quality flags (`quality`: the config section; defaults if
    None); engine errors and the flags in `quality.drop` (plus `truncated` with
    `drop_truncated`) leave a row out. `source` names the rows' file in error messages."""
    quality = quality or default_quality()
    if drop_truncated:
        quality = {**quality, "drop": sorted({*quality["drop"], "truncated"})}
    checker = QualityFlags(quality, min_token_length)
    tally = _ShardTally(split, output, checker)
    with (
        atomic_path(output) as tmp,
        pq.ParquetWriter(tmp, RELEASE_SCHEMA, compression="zstd") as writer,
    ):
        for batch in batches:
            token_length, keys, flags, reasons = _flagged(batch, checker)
            tally.add_generated(batch, flags, reasons, keys)
            keep = [r is None for r in reasons]
            table = _release_table(batch, token_length, flags, keep)
            finish = batch.column("finish_reason").to_pylist()
            tally.add_kept(
                table,
                source,
                [n for n, k in zip(token_length, keep, strict=True) if k],
                [f for f, k in zip(finish, keep, strict=True) if k],
            )
            if table.num_rows:  # no empty row groups: `datasets` cannot read them
                writer.write_table(table.cast(RELEASE_SCHEMA))
    stats = tally.stats(min_token_length, drop_truncated)
    if left_out_path is not None:  # the ledger's record of what this step left out, and why
        write_parquet(left_out_path, pa.table(tally.left_out_rows, schema=LEFT_OUT_SCHEMA))
    write_json(stats_path, stats)
    return stats


def split_totals(shard_stats: list[dict]) -> dict:
    """One split's figures from its shards' statistics."""
    left_out: Counter = Counter()
    flags: Counter = Counter()
    for s in shard_stats:
        left_out.update(s["left_out"])
        flags.update(s.get("flags", {}))
    return {
        "flags": {f: flags[f] for f in FLAGS},
        "files": len(shard_stats),
        "generated": sum(s["generated"] for s in shard_stats),
        "rows": sum(s["kept"] for s in shard_stats),
        "left_out": dict(sorted(left_out.items())),
        "truncated_kept": sum(s["truncated_kept"] for s in shard_stats),
        "tokens": sum(s["tokens"] for s in shard_stats),
    }


# --- command line ------------------------------------------------------------------------------

# The release step's own arguments, which finish-shard passes on.
RELEASE_ARGUMENTS = {
    "--min-token-length": {
        "required": True,
        "type": config_value_arg("release.min_token_length", int),
    },
    "--drop-truncated": {"action": "store_true"},
    "--quality": {"type": settings_arg("quality"), "help": "the config's quality section (JSON)"},
}


def _release_command(args) -> None:
    release_shard(
        args.split,
        args.shard,
        args.out,
        args.stats,
        args.min_token_length,
        drop_truncated=args.drop_truncated,
        quality=args.quality,
    )


COMMANDS = (
    Command(
        "release",
        "count tokens, filter and write one shard's release file",
        _release_command,
        {
            "--split": SPLIT,
            "--shard": path_arg("the decontaminated shard"),
            "--out": path_arg("release/<split>/train-*-of-*.parquet"),
            "--stats": path_arg("the shard's statistics (JSON)"),
            **RELEASE_ARGUMENTS,
        },
    ),
)
