"""datatrove plumbing shared by the filter stages (dedup, decontamination): a reader of one
generation shard, a stand-in writer that records verdicts, one datatrove task run in this
process, and a shard split by a filter's verdicts. Not a stage of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep

from cosmoforge.core.io import read_input_table


class ShardReader(PipelineStep):
    """The documents of one generation shard, in row order (stage 1 and 4 must agree)."""

    name = "cosmoforge shard reader"
    type = "📖 - READER"

    def __init__(self, path: str | Path, text_column: str = "text"):
        super().__init__()
        self.path = str(path)
        self.text_column = text_column

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        table = read_input_table(self.path, columns=["sample_id", "split", self.text_column])
        for sample_id, split, text in zip(
            table.column("sample_id").to_pylist(),
            table.column("split").to_pylist(),
            table.column(self.text_column).to_pylist(),
            strict=True,
        ):
            self.stat_update("documents")
            yield Document(text=text or "", id=sample_id, metadata={"split": split})


class Collector:
    """Stands in for a datatrove writer: records each document it gets, one JSON line: its id
    and its `doc.metadata` (where a filter records why it dropped the document). datatrove
    deep-copies the pipeline for each rank, so state must live in a file."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._fh = None

    def __enter__(self):
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        return self

    def __exit__(self, *exc):
        self._fh.close()
        return False

    def write(self, doc: Document, rank: int = 0) -> None:
        self._fh.write(json.dumps([doc.id, doc.metadata.get(VERDICT_KEY)]) + "\n")

    def read(self) -> dict[str, object]:
        """id -> what the filter recorded in doc.metadata[VERDICT_KEY] (None if nothing)."""
        if not Path(self.path).exists():
            return {}
        with open(self.path, encoding="utf-8") as fh:
            return dict(json.loads(line) for line in fh)


# A filter that wants its finding kept with a dropped row puts it here, JSON-serializable.
VERDICT_KEY = "cosmoforge_verdict"


class CollectStep(PipelineStep):
    name = "cosmoforge collect"
    type = "💽 - WRITER"

    def __init__(self, collector: Collector):
        super().__init__()
        self.collector = collector

    def run(self, data, rank: int = 0, world_size: int = 1):
        with self.collector as out:
            for doc in data:
                out.write(doc)
                yield doc


def run_rank(pipeline: list, rank: int, tasks: int, logging_dir: str | Path) -> None:
    """Run exactly one datatrove task in this process; Snakemake decides what runs."""
    LocalPipelineExecutor(
        pipeline,
        tasks=tasks,
        workers=1,
        local_tasks=1,
        local_rank_offset=rank,
        logging_dir=str(logging_dir),
        skip_completed=False,
    ).run()


def split_by_filter(
    shard: str | Path, make_filter, rank: int, tasks: int, logging_dir: str | Path, scratch: Path
) -> tuple[pa.Table, pa.Array, dict[str, object]]:
    """Run one datatrove filter over a generation shard and split the shard by its verdict: the
    shard's table, a mask of the rows it kept, and for each dropped row what the filter put in
    `doc.metadata[VERDICT_KEY]`. `make_filter(exclusion_writer)` builds the filter around the
    collector of dropped rows. A shard whose rows datatrove did not all see is an error, never
    a silently smaller release."""
    scratch.mkdir(parents=True, exist_ok=True)
    kept = Collector(scratch / "kept.jsonl")
    dropped = Collector(scratch / "dropped.jsonl")
    for collector in (kept, dropped):  # a killed job may have left one behind
        Path(collector.path).unlink(missing_ok=True)
    try:
        pipeline = [ShardReader(shard), make_filter(dropped), CollectStep(kept)]
        run_rank(pipeline, rank, tasks, logging_dir)
        kept_ids, dropped_ids = kept.read(), dropped.read()
    finally:
        for collector in (kept, dropped):
            Path(collector.path).unlink(missing_ok=True)
    table = read_input_table(shard)
    if len(kept_ids) + len(dropped_ids) != table.num_rows:
        raise RuntimeError(
            f"{shard}: datatrove saw {len(kept_ids) + len(dropped_ids)} of "
            f"{table.num_rows} documents"
        )
    mask = pc.is_in(table.column("sample_id"), value_set=pa.array(list(kept_ids), pa.string()))
    return table, mask, dropped_ids
