"""Atomic file output and stable hashing.

Every file the pipeline produces goes through :func:`atomic_path`: it is written under a
temporary name in the same directory and renamed into place only once complete, so a killed job
never leaves a file that looks finished (rename is atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.errors import CosmoforgeError, UnreadableFileError

# Errors of the file system that the user fixes outside cosmoforge (space, quota, permissions):
# shown as one line naming the file, not as a traceback from deep inside a writer.
_WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full; free space there and rerun",
    errno.EDQUOT: "the disk quota is used up; free space there and rerun",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


class WriteError(CosmoforgeError):
    """An output that the file system refused (full disk, quota, permissions)."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as exc:
        ours = {str(p) for p in (path, path.parent, tmp_path) if p is not None}
        if exc.errno not in _WRITE_ERRNOS or (exc.filename and str(exc.filename) not in ours):
            raise  # not this output's (an input the block was reading, for example)
        raise WriteError(
            f"{path}: not written: {_WRITE_ERRNOS[exc.errno]} ({os.strerror(exc.errno)}); "
            "nothing partial was kept"
        ) from exc
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_parquet(path: str | os.PathLike, table: pa.Table) -> None:
    # No timestamps or writer-dependent metadata besides the schema: the same rows give the
    # same bytes, which the determinism tests rely on.
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def iter_parquet(path: str | os.PathLike, batch_size: int, columns: list[str] | None = None):
    """Record batches of a parquet file with memory bounded by a batch. pyarrow's default
    (pre-buffered, threaded) reader keeps what it has read: +6 MB per 4,096-row batch of
    3,000-character texts, 1.7 GB after 1M rows, where this stays at ~250 MB."""
    parquet = pq.ParquetFile(path, pre_buffer=False)
    yield from parquet.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)


def read_parquet(path: str | os.PathLike) -> pa.Table:
    return pq.read_table(path)


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Within the block, pyarrow's errors (a truncated file, "Couldn't deserialize thrift", not
    parquet at all) become one line naming `path` and what to do."""
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        # pyarrow reports a damaged file as OSError without errno ("Couldn't deserialize
        # thrift"); an OSError with errno is the system's (no such file, disk full): left as is.
        if not isinstance(exc, pa.ArrowException) and exc.errno is not None:
            raise
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnreadableFileError(
            f"{path}: unreadable parquet ({detail}); delete it and rerun, the workflow makes it "
            "again"
        ) from exc


def read_input_table(path: str | os.PathLike, **kwargs) -> pa.Table:
    """`pq.read_table` for a stage's input, with `reading`'s message."""
    with reading(path):
        return pq.read_table(path, **kwargs)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _joined(parts: tuple) -> bytes:
    """`json.dumps([str(p) for p in parts])`, built directly when no part needs escaping (the
    common case, ~5x faster): the hashes below are computed per prompt."""
    texts = [str(p) for p in parts]
    plain = " ".join(texts)  # printable ASCII without '"' or backslash is JSON as it is
    if plain.isascii() and plain.isprintable() and '"' not in plain and "\\" not in plain:
        return ('["' + '", "'.join(texts) + '"]').encode("ascii")
    return json.dumps(texts).encode("utf-8")


def stable_hash(*parts: object, length: int = 16) -> str:
    """Hex digest of the parts joined unambiguously; independent of PYTHONHASHSEED."""
    return hashlib.sha256(_joined(parts)).hexdigest()[:length]


def derive_seed(*parts: object, bits: int = 31) -> int:
    """An integer seed from (global seed, split, style, sample id, ...), stable across runs."""
    digest = hashlib.sha256(_joined(parts)).digest()
    return int.from_bytes(digest[:8], "big") % (1 << bits)


def load_hub_dataset(error: type[CosmoforgeError], where: str, instead: str, *args, **kwargs):
    """`datasets.load_dataset(*args, **kwargs)`, with the hub's failures (offline, unknown name,
    gated) as one line of `error` that names the source (`where`) and the way round them
    (`instead`: the config key that takes a local copy)."""
    import datasets  # optional dependency: only for hub sources

    try:
        return datasets.load_dataset(*args, **kwargs)
    except (ConnectionError, OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise error(
            f"{where}: cannot load from the Hugging Face hub ({detail}). Offline (a compute "
            f"node, for example)? Export it where the hub is reachable and give the file as "
            f"{instead}"
        ) from exc
