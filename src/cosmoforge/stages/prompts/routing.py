"""The topics stage's verdict on each web seed, read in step with the seed file: its cluster's
topic, and whether the seed is kept and on which route (the templates it may use)."""

from __future__ import annotations

from pathlib import Path

from cosmoforge.core.errors import TopicError
from cosmoforge.core.io import (
    iter_parquet,
)


class TopicCursor:
    """The topic assignments of a split's web seeds, read in step with the seed file.

    The assignment files (one per topic shard, in shard order) list the web seeds in seed-file
    order, so they are joined to the seeds by position, batch by batch, and the seed ids are
    compared to catch stale assignments: no split-wide dictionary is built."""

    def __init__(self, paths: list[str | Path], decisions_path: str | Path):
        from cosmoforge.stages.topics import load_decisions

        self.decisions = {e["id"]: e for e in load_decisions(decisions_path)}
        self.decisions_path = decisions_path
        self._paths = list(paths)
        self._batches = iter(())
        self._ids: list[str] = []
        self._clusters: list[int] = []
        self._pos = 0
        self._path: str | Path = self._paths[0] if self._paths else ""

    def _next_batch(self) -> bool:
        while True:
            batch = next(self._batches, None)
            if batch is not None:
                self._ids = batch.column(0).to_pylist()
                self._clusters = batch.column(1).to_pylist()
                self._pos = 0
                return True
            if not self._paths:
                return False
            self._open(self._paths.pop(0))

    def _open(self, path) -> None:
        self._path = path
        self._batches = iter_parquet(path, 8192, columns=["seed_id", "cluster"])

    def take(self, seed_ids: list[str]) -> list[dict]:
        """Topic info of the next len(seed_ids) web seeds, which must be exactly these."""
        out = []
        for seed_id in seed_ids:
            if self._pos >= len(self._ids) and not self._next_batch():
                raise TopicError(
                    f"web seed {seed_id!r} has no topic cluster; the topic assignments "
                    "are out of date (rerun the topics stages)"
                )
            if self._ids[self._pos] != seed_id:
                raise TopicError(
                    f"{self._path}: lists seed {self._ids[self._pos]!r} where the seeds have "
                    f"{seed_id!r}; the topic assignments are out of date (rerun the topics "
                    "stages)"
                )
            cluster = self._clusters[self._pos]
            self._pos += 1
            entry = self.decisions.get(cluster)
            if entry is None:
                raise TopicError(
                    f"{self.decisions_path}: no entry for cluster {cluster} (seed {seed_id})"
                )
            out.append(
                {
                    "cluster": cluster,
                    "topic": (entry.get("topic") or "").strip(),
                    "decision": entry["decision"],
                    "route": entry.get("route"),
                }
            )
        return out

    def finish(self) -> None:
        """Every assignment was used: more assignments than web seeds means they are stale."""
        if self._pos < len(self._ids) or self._next_batch():
            raise TopicError(
                f"{self._path}: assignments for more web seeds than the seed file has; the "
                "topic assignments are out of date (rerun the topics stages)"
            )
