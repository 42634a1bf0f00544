"""Decontamination as a datatrove filter step, one generation shard per job."""

from __future__ import annotations

import json
from pathlib import Path

from datatrove.pipeline.filters.base_filter import BaseFilter

from .index import BenchmarkIndex


class BenchmarkDecontFilter(BaseFilter):
    """Drops documents contaminated by any benchmark item; records every match as a JSON line
    (datatrove deep-copies steps per rank, so results go to a file, not to an attribute)."""

    name = "🧼 benchmark decontamination (Cosmopedia rule)"

    def __init__(
        self, index_file: str, threshold: float, findings_file: str, batch_size: int = 512
    ):
        super().__init__(batch_size=batch_size)
        self.index_file, self.threshold, self.findings_file = index_file, threshold, findings_file
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
            with open(self.findings_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"sample_id": doc.id, "matches": found}) + "\n")
            results.append((False, "contaminated"))
        return results

    def filter(self, doc) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]


def decontaminate_shard(
    shard: str | Path,
    index_path: str | Path,
    threshold: float,
    clean_out: str | Path,
    contaminated_out: str | Path,
    logging_dir: str | Path,
) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..dedup import ShardReader, run_rank
    from ..io import read_input_table, write_parquet

    scratch = Path(logging_dir) / f"scratch-{Path(shard).parent.name}-{Path(shard).stem}"
    scratch.mkdir(parents=True, exist_ok=True)
    findings_path = scratch / "findings.jsonl"
    findings_path.unlink(missing_ok=True)

    run_rank(
        [ShardReader(shard), BenchmarkDecontFilter(str(index_path), threshold, str(findings_path))],
        0,
        1,
        logging_dir,
    )
    findings = {}
    if findings_path.exists():
        for line in findings_path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            findings[record["sample_id"]] = record["matches"]
    table = read_input_table(shard)
    dirty = pc.is_in(table.column("sample_id"), value_set=pa.array(list(findings), pa.string()))
    write_parquet(clean_out, table.filter(pc.invert(dirty)))
    contaminated = table.filter(dirty)
    contaminated = contaminated.append_column(
        "benchmark_matches",
        pa.array(
            [json.dumps(findings[i]) for i in contaminated.column("sample_id").to_pylist()],
            pa.string(),
        ),
    )
    write_parquet(contaminated_out, contaminated)
    for extra in scratch.glob("*"):
        extra.unlink()
    return {"documents": table.num_rows, "contaminated": contaminated.num_rows}
