"""datatrove plumbing shared by the filter stages (dedup, decontamination): the documents of a
generation shard, datatrove's filter steps run over them as chained generators in this process,
and an in-memory exclusion writer that records what each filter dropped and why. Not a stage of
its own.

The steps are called the way datatrove's own tests call them (`step.run(documents)`), without
its executor: one shard is read once, passed through every filter, and split by their verdicts,
with no intermediate copy of the shard on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep

from cosmoforge.core.io import read_input_table

# A filter that wants its finding kept with a dropped row puts it here, JSON-serializable.
VERDICT_KEY = "cosmoforge_verdict"


def shard_documents(table: pa.Table, text_column: str = "text") -> Iterator[Document]:
    """The documents of one generation shard, in row order: MinHash stage 1 and stage 4 must see
    the same order, since datatrove names a document by its index within the rank."""
    for sample_id, split, text in zip(
        table.column("sample_id").to_pylist(),
        table.column("split").to_pylist(),
        table.column(text_column).to_pylist(),
        strict=True,
    ):
        yield Document(text=text or "", id=sample_id, metadata={"split": split})


class ShardReader(PipelineStep):
    """A generation shard as the first step of a datatrove pipeline (MinHash signatures)."""

    name = "cosmoforge shard reader"
    type = "📖 - READER"

    def __init__(self, path: str | Path, text_column: str = "text"):
        super().__init__()
        self.path = str(path)
        self.text_column = text_column

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        table = read_input_table(self.path, columns=["sample_id", "split", self.text_column])
        for doc in shard_documents(table, self.text_column):
            self.stat_update("documents")
            yield doc


class DroppedRows:
    """An exclusion writer that keeps, in memory, each dropped document's id and what the filter
    recorded in `doc.metadata[VERDICT_KEY]` (None if nothing). Used in this process only, so
    nothing has to survive a copy of the pipeline."""

    def __init__(self):
        self.verdicts: dict[str, object] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, doc: Document, rank: int = 0) -> None:
        self.verdicts[doc.id] = doc.metadata.get(VERDICT_KEY)


# Builds a datatrove filter step around the exclusion writer that records its drops.
FilterFactory = Callable[[DroppedRows], PipelineStep]


def apply_filters(
    table: pa.Table, filters: Sequence[FilterFactory], rank: int = 0, shard: str | Path = ""
) -> tuple[pa.Array, list[dict[str, object]]]:
    """Pass a shard's rows through the filters in turn (each sees only what the ones before it
    kept). Returns a mask of the rows every filter kept and, per filter, the verdict of each row
    it dropped, by sample id. Rows that come out neither kept nor dropped are an error, never a
    silently smaller release."""
    dropped = [DroppedRows() for _ in filters]
    documents: Iterator[Document] = shard_documents(table)
    for make_filter, writer in zip(filters, dropped, strict=True):
        documents = make_filter(writer).run(documents, rank, 1)
    kept = [doc.id for doc in documents]
    seen = len(kept) + sum(len(d.verdicts) for d in dropped)
    if seen != table.num_rows:
        raise RuntimeError(f"{shard}: the filters accounted for {seen} of {table.num_rows} rows")
    mask = pc.is_in(table.column("sample_id"), value_set=pa.array(kept, pa.string()))
    return mask, [d.verdicts for d in dropped]


def rows_in(table: pa.Table, verdicts: dict[str, object]) -> pa.Array:
    """A mask of the rows whose sample id is in `verdicts`."""
    return pc.is_in(table.column("sample_id"), value_set=pa.array(list(verdicts), pa.string()))


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
