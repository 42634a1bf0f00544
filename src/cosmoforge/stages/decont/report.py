"""The contamination table of the card, in Cosmopedia's shape."""

from __future__ import annotations

import json
from pathlib import Path

from cosmoforge.core.declare import (
    SHARDS,
    Command,
    json_arg,
    optional_paths,
    path_arg,
    per_shard_files,
)
from cosmoforge.core.layout import RunPaths


def contamination_report(
    contaminated_files: list[str | Path],
    groups: dict[str, list[str]],
    benchmarks: list[str],
    params: dict,
    out_csv: str | Path,
    out_json: str | Path,
) -> dict:
    """Cosmopedia's table: rows = split groups, columns = benchmarks, cells = removed samples
    (unique benchmark items)."""
    import pyarrow.parquet as pq

    from cosmoforge.core.io import write_json, write_text

    group_of = {split: group for group, splits in groups.items() for split in splits}
    samples = {g: {b: set() for b in benchmarks} for g in groups}
    items = {g: {b: set() for b in benchmarks} for g in groups}
    for path in contaminated_files:
        for row in pq.read_table(
            path, columns=["sample_id", "split", "benchmark_matches"]
        ).to_pylist():
            group = group_of.get(row["split"], row["split"])
            samples.setdefault(group, {b: set() for b in benchmarks})
            items.setdefault(group, {b: set() for b in benchmarks})
            for match in json.loads(row["benchmark_matches"]):
                samples[group][match["benchmark"]].add(row["sample_id"])
                items[group][match["benchmark"]].add(match["item_id"])
    table = {g: {b: [len(samples[g][b]), len(items[g][b])] for b in benchmarks} for g in samples}
    lines = ["group," + ",".join(benchmarks)]
    for group, cells in table.items():
        lines.append(f'"{group}",' + ",".join(f'"{n} ({u})"' for n, u in cells.values()))
    write_text(out_csv, "\n".join(lines) + "\n")
    report = {
        "parameters": params,
        "table": table,
        "contaminated": len({s for g in samples.values() for b in g.values() for s in b}),
    }
    write_json(out_json, report)
    return report


# --- command line ------------------------------------------------------------------------------


def _contamination_report_command(args) -> None:
    from cosmoforge.stages.decont.benchmarks import BENCHMARKS

    s = args.settings
    benchmarks = sorted(s["benchmarks"]) or sorted(BENCHMARKS)
    contamination_report(
        per_shard_files(args, "contaminated", RunPaths.decont_contaminated),
        s["groups"],
        benchmarks,
        {"ngram": s["ngram"], "threshold": s["threshold"]},
        args.out_csv,
        args.out_json,
    )


COMMANDS = (
    Command(
        "contamination-report",
        "the contamination table",
        _contamination_report_command,
        {
            **SHARDS,
            "--contaminated": optional_paths("each shard's contaminated rows"),
            "--settings": {
                "required": True,
                "type": json_arg,
                "help": 'JSON: {"benchmarks", "groups", "ngram", "threshold"}',
            },
            "--out-csv": path_arg(),
            "--out-json": path_arg(),
        },
    ),
)
