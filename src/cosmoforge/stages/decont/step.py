"""Decontamination as a datatrove filter step, one generation shard per job."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from datatrove.pipeline.filters.base_filter import BaseFilter

from cosmoforge.core.declare import Command, config_value_arg, path_arg
from cosmoforge.core.io import read_input_table, write_parquet
from cosmoforge.stages.decont.index import BenchmarkIndex
from cosmoforge.stages.filters import VERDICT_KEY, FilterFactory, apply_filters, rows_in


class BenchmarkDecontFilter(BaseFilter):
    """Drops documents contaminated by any benchmark item, each with its matches in
    `doc.metadata` (filters.VERDICT_KEY), which the exclusion writer records."""

    name = "🧼 benchmark decontamination (Cosmopedia rule)"

    def __init__(self, index_file: str, threshold: float, exclusion_writer, batch_size: int = 512):
        super().__init__(exclusion_writer=exclusion_writer, batch_size=batch_size)
        self.index_file, self.threshold = index_file, threshold
        self._index = None

    def filter_batch(self, batch) -> list[bool | tuple[bool, str]]:
        if self._index is None:
            self._index = BenchmarkIndex.load(self.index_file)
        results = []
        for doc, found in zip(
            batch, self._index.check_batch([d.text for d in batch], self.threshold), strict=True
        ):
            if not found:
                results.append(True)
                continue
            doc.metadata[VERDICT_KEY] = found
            results.append((False, "contaminated"))
        return results

    def filter(self, doc) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]


def benchmark_filter(index_path: str | Path, threshold: float) -> FilterFactory:
    """The decontamination filter, given the benchmark index and the match threshold."""
    return lambda dropped: BenchmarkDecontFilter(str(index_path), threshold, dropped)


def contaminated_rows(table: pa.Table, findings: dict[str, object]) -> pa.Table:
    """The rows the filter dropped, each with its benchmark matches (JSON)."""
    contaminated = table.filter(rows_in(table, findings))
    return contaminated.append_column(
        "benchmark_matches",
        pa.array(
            [json.dumps(findings[i]) for i in contaminated.column("sample_id").to_pylist()],
            pa.string(),
        ),
    )


def decontaminate_shard(
    shard: str | Path,
    index_path: str | Path,
    threshold: float,
    clean_out: str | Path,
    contaminated_out: str | Path,
) -> dict:
    """Decontamination alone over one shard (finish-shard chains it after the dedup filter)."""
    table = read_input_table(shard)
    kept, (findings,) = apply_filters(table, [benchmark_filter(index_path, threshold)], 0, shard)
    write_parquet(clean_out, table.filter(kept))
    contaminated = contaminated_rows(table, findings)
    write_parquet(contaminated_out, contaminated)
    return {"documents": table.num_rows, "contaminated": contaminated.num_rows}


# --- command line ------------------------------------------------------------------------------


def _decontaminate_command(args) -> None:
    decontaminate_shard(args.shard, args.index, args.threshold, args.out, args.contaminated)


COMMANDS = (
    Command(
        "decontaminate",
        "drop documents contaminated by benchmark items",
        _decontaminate_command,
        {
            "--shard": path_arg("the shard after dedup"),
            "--index": path_arg("the benchmark n-gram index"),
            "--threshold": {
                "required": True,
                "type": config_value_arg("decontamination.threshold", float),
            },
            "--out": path_arg("the clean shard"),
            "--contaminated": path_arg("its contaminated rows with their matches"),
        },
    ),
)
