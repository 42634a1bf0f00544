"""The CPU stages of one generation shard after the dedup barrier, as one job.

MinHash filter (drop near-duplicates, given the clusters of the whole run), benchmark
decontamination, then the shard's release file and statistics. Each stage is its own function
and CLI command (`dedup filter`, `decontaminate`, `release`) and writes its own outputs; this
only runs them in sequence in one process, so a cluster queues one job per shard instead of
three. (Snakemake's `group:` would do the same on Slurm, but validating 773 groups walks the
whole upstream DAG once per group, through the dedup barrier: the preset's dry run went from
~29 s to ~65 s.)
"""

from __future__ import annotations

import time
from pathlib import Path

from cosmoforge.core.declare import SPLIT, Command, config_value_arg, count_arg, path_arg
from cosmoforge.core.io import write_json
from cosmoforge.stages.decont import decontaminate_shard
from cosmoforge.stages.dedup import filter_shard
from cosmoforge.stages.release import RELEASE_ARGUMENTS, release_shard


def finish_shard(
    split: str,
    generated: str | Path,
    *,
    rank: int,
    tasks: int,
    clusters_dir: str | Path,
    index: str | Path,
    threshold: float,
    min_token_length: int,
    drop_truncated: bool,
    quality: dict | None = None,
    outputs: dict[str, str | Path],
    logging_dir: str | Path,
) -> dict:
    """`outputs`: deduped, removed, stayed (dedup); clean, contaminated (decontamination);
    release, stats, left_out (release; left_out optional). The stats file also records each
    stage's seconds."""
    seconds = {}
    started = time.perf_counter()
    dedup = filter_shard(
        generated,
        rank,
        tasks,
        clusters_dir,
        outputs["deduped"],
        outputs["removed"],
        outputs["stayed"],
        Path(logging_dir) / "filter",
    )
    seconds["dedup_filter"] = time.perf_counter() - started
    started = time.perf_counter()
    decont = decontaminate_shard(
        outputs["deduped"],
        index,
        threshold,
        outputs["clean"],
        outputs["contaminated"],
        Path(logging_dir) / "decont",
    )
    seconds["decontaminate"] = time.perf_counter() - started
    started = time.perf_counter()
    stats = release_shard(
        split,
        outputs["clean"],
        outputs["release"],
        outputs["stats"],
        min_token_length,
        drop_truncated=drop_truncated,
        quality=quality,
        left_out_path=outputs.get("left_out"),
    )
    seconds["release"] = time.perf_counter() - started
    stats.update(
        dedup_removed=dedup["removed"],
        contaminated=decont["contaminated"],
        stage_seconds={k: round(v, 3) for k, v in seconds.items()},
    )
    write_json(outputs["stats"], stats)
    return stats


# --- command line ------------------------------------------------------------------------------

OUTPUTS = {
    "deduped": "the shard after dedup",
    "removed": "its near-duplicates",
    "stayed": "JSON: which document stayed in each duplicate cluster",
    "clean": "the shard after decontamination",
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
        tasks=args.tasks,
        clusters_dir=args.clusters,
        index=args.index,
        threshold=args.threshold,
        min_token_length=args.min_token_length,
        drop_truncated=args.drop_truncated,
        quality=args.quality,
        outputs={name: getattr(args, name) for name in OUTPUTS},
        logging_dir=args.logging_dir,
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
            "--tasks": {"required": True, "type": count_arg, "help": "dedup ranks in the run"},
            "--clusters": path_arg("dedup/clusters folder"),
            "--index": path_arg("the benchmark n-gram index"),
            "--threshold": {
                "required": True,
                "type": config_value_arg("decontamination.threshold", float),
            },
            **RELEASE_ARGUMENTS,
            **{f"--{name.replace('_', '-')}": path_arg(what) for name, what in OUTPUTS.items()},
            "--logging-dir": path_arg("datatrove's logs"),
        },
    ),
)
