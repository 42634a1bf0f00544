"""The CPU stages of one generation shard after the dedup barrier, as one job.

MinHash filter (drop near-duplicates, given the clusters of the whole run), benchmark
decontamination, then the shard's release file and statistics. The shard is read once: its
rows pass through both datatrove filters as chained generators, the kept rows go straight to
the release step, and only what a step drops is written beside the release (removed,
contaminated, left out), with the statistics. Each stage is also a CLI command of its own
(`dedup filter`, `decontaminate`, `release`) that reads and writes files, for running one step
by hand. One job per shard rather than three: Snakemake's `group:` would do the same on Slurm,
but validating 773 groups walks the whole upstream DAG once per group, through the dedup
barrier (the preset's dry run went from ~29 s to ~65 s).
"""

from __future__ import annotations

import time
from pathlib import Path

from cosmoforge.core.declare import SPLIT, Command, config_value_arg, count_arg, path_arg
from cosmoforge.core.io import read_input_table, write_json, write_parquet
from cosmoforge.stages.decont.step import benchmark_filter, contaminated_rows
from cosmoforge.stages.dedup import dedup_side_files, minhash_filter
from cosmoforge.stages.filters import apply_filters
from cosmoforge.stages.release import BATCH_ROWS, RELEASE_ARGUMENTS, release_batches


def finish_shard(
    split: str,
    generated: str | Path,
    *,
    rank: int,
    clusters_dir: str | Path,
    index: str | Path,
    threshold: float,
    min_token_length: int,
    drop_truncated: bool,
    quality: dict | None = None,
    outputs: dict[str, str | Path],
) -> dict:
    """`outputs`: removed, stayed (dedup); contaminated (decontamination); release, stats,
    left_out (release; left_out optional). The stats file also records each stage's seconds."""
    started = time.perf_counter()
    table = read_input_table(generated)
    kept, (removed, contaminated) = apply_filters(
        table, [minhash_filter(clusters_dir), benchmark_filter(index, threshold)], rank, generated
    )
    filtered = time.perf_counter()
    removed_table, stayed = dedup_side_files(table, removed, clusters_dir, rank)
    write_parquet(outputs["removed"], removed_table)
    write_json(outputs["stayed"], stayed)
    write_parquet(outputs["contaminated"], contaminated_rows(table, contaminated))
    # One chunk, then slices of BATCH_ROWS: the same batches the release step reads from a file.
    clean = table.filter(kept).combine_chunks()
    del table
    side_files = time.perf_counter()
    stats = release_batches(
        split,
        clean.to_batches(max_chunksize=BATCH_ROWS),
        outputs["release"],
        outputs["stats"],
        min_token_length,
        drop_truncated=drop_truncated,
        quality=quality,
        left_out_path=outputs.get("left_out"),
        source=generated,
    )
    stats.update(
        dedup_removed=len(removed),
        contaminated=len(contaminated),
        stage_seconds={
            "read_and_filter": round(filtered - started, 3),
            "side_files": round(side_files - filtered, 3),
            "release": round(time.perf_counter() - side_files, 3),
        },
    )
    write_json(outputs["stats"], stats)
    return stats


# --- command line ------------------------------------------------------------------------------

OUTPUTS = {
    "removed": "the shard's near-duplicates",
    "stayed": "JSON: which document stayed in each duplicate cluster",
    "contaminated": "its contaminated rows with their matches",
    "release": "release/<split>/train-*-of-*.parquet",
    "stats": "the release file's statistics (JSON)",
    "left_out": "the rows the release step left out, with the reason (parquet)",
}


def _finish_shard_command(args) -> None:
    finish_shard(
        args.split,
        args.generated,
        rank=args.rank,
        clusters_dir=args.clusters,
        index=args.index,
        threshold=args.threshold,
        min_token_length=args.min_token_length,
        drop_truncated=args.drop_truncated,
        quality=args.quality,
        outputs={name: getattr(args, name) for name in OUTPUTS},
    )


COMMANDS = (
    Command(
        "finish-shard",
        "one shard after the dedup barrier: dedup filter, decontaminate, release, in one job",
        _finish_shard_command,
        {
            "--split": SPLIT,
            "--generated": path_arg("the generation shard"),
            "--rank": {"required": True, "type": count_arg, "help": "its dedup rank"},
            "--clusters": path_arg("dedup/clusters folder"),
            "--index": path_arg("the benchmark n-gram index"),
            "--threshold": {
                "required": True,
                "type": config_value_arg("decontamination.threshold", float),
            },
            **RELEASE_ARGUMENTS,
            **{f"--{name.replace('_', '-')}": path_arg(what) for name, what in OUTPUTS.items()},
        },
    ),
)
