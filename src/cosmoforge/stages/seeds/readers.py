"""Where seed rows come from: JSON lines, CSV, parquet and `datasets` sources, each read in
batches (a list of (row number, raw row or BadRow), or a (first row number, RecordBatch) pair
that is validated column-wise)."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from cosmoforge.core.contracts import KINDS, is_local_dataset
from cosmoforge.core.errors import SeedError
from cosmoforge.core.io import iter_parquet, load_hub_dataset
from cosmoforge.stages.seeds.rows import BadRow


def _batched(rows, size: int) -> Iterator[list]:
    batch: list = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# What a compressed file starts with, for one whose name does not say (`export.jsonl` that is
# gzip inside): gzip, bzip2, zstandard, xz.
MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\xfd7zXZ\x00": "xz",
}


def compression_of(path: Path) -> str | None:
    """The file's compression, by its extension (fsspec's table: .gz, .bz2, .zst, .xz, ...) or
    else by its first bytes; None for a plain file."""
    import fsspec.utils

    by_name = fsspec.utils.infer_compression(str(path))
    if by_name is not None:
        return by_name
    with open(path, "rb") as fh:
        head = fh.read(6)
    return next((name for magic, name in MAGIC.items() if head.startswith(magic)), None)


@contextlib.contextmanager
def open_seed_file(path: Path) -> Iterator[IO[bytes]]:
    """A seed file's bytes, decompressed as they are read (fsspec's codecs: memory stays a
    read buffer at any file size). A damaged or truncated compressed file is one line naming
    it and the codec, and nothing of the split is written (its seed file is written
    atomically)."""
    import fsspec

    compression = compression_of(path)
    with fsspec.open(str(path), "rb", compression=compression) as fh:
        if compression is None:
            yield fh
            return
        try:
            # zstandard's reader has no readline: a buffer over it iterates lines like the rest
            yield io.BufferedReader(fh) if compression == "zstd" else fh
        except (OSError, EOFError, ValueError) as exc:
            raise SeedError(
                f"{path}: not a readable {compression} file ({type(exc).__name__}: {exc}); "
                "export it again, or give it uncompressed"
            ) from exc


def _jsonl_chunks(path: Path, lines: int) -> Iterator[tuple[int, list[bytes]]]:
    """The file's lines, `lines` at a time, with the line number of each chunk's first
    (decompressed where the file is compressed)."""
    with open_seed_file(path) as fh:
        first = 1
        while chunk := list(itertools.islice(fh, lines)):
            if first == 1 and chunk[0].startswith(b"\xef\xbb\xbf"):
                chunk[0] = chunk[0][3:]  # a UTF-8 byte order mark is not part of the first row
            yield first, chunk
            first += len(chunk)


def _parsed_lines(chunk: list[bytes], first: int) -> Iterator[tuple[int, Any]]:
    """Each non-blank line of a chunk parsed on its own, or the reason it is not a row."""
    import orjson

    for line_no, raw in enumerate(chunk, start=first):
        if not raw.strip():
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                value = BadRow("undecodable", None, f"not UTF-8 ({bad.reason})")
            else:
                value = BadRow("invalid_json", None, f"not valid JSON ({exc})")
        yield line_no, value


def _arrow_json_batch(chunk: list[bytes], columns: list[str]) -> pa.RecordBatch | None:
    """A chunk of JSON lines parsed by Arrow into string columns (~3x faster than a Python
    object per row), or None unless every line is an object whose values in `columns` are
    strings or missing: blank lines, non-objects, other types, broken JSON or bytes that are
    not UTF-8 go row by row, which names each bad row exactly."""
    data = b"".join(chunk)
    schema = pa.schema([(c, pa.string()) for c in columns])
    try:
        table = pa_json.read_json(
            pa.py_buffer(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
        table.validate(full=True)  # Arrow's JSON reader passes invalid UTF-8 through
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != len(chunk):  # a blank line was skipped: row numbers would shift
        return None
    return table.combine_chunks().to_batches()[0]  # the schema's columns, in order


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    # utf-8-sig drops a byte order mark (else the first column's name would carry it);
    # surrogateescape keeps undecodable bytes visible so they are reported per row and field
    # instead of aborting the whole file.
    with open_seed_file(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        yield from enumerate(csv.DictReader(text), start=1)


def _hf_batches(source: dict, batch_rows: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    """A hub (or local `datasets`) source streamed as Arrow batches of the kind's columns:
    iterating it as Python dicts costs ~10x more (measured: 38k vs 364k rows/s on web-like
    rows), and the batches are then checked column-wise like parquet."""
    ds = _open_datasets_source(source)
    kind, fields = source["kind"], source.get("fields", {})
    # One column may feed two fields (the preset's AutoMathText: id and url both from `url`).
    wanted = list(dict.fromkeys(fields.get(name, name) for name in KINDS[kind][0] + KINDS[kind][1]))
    if ds.column_names:  # known features: leave the other columns unread
        ds = ds.select_columns([c for c in wanted if c in ds.column_names])
    first = 1
    for table in ds.with_format("arrow").iter(batch_size=batch_rows):
        for batch in table.combine_chunks().to_batches():
            yield first, batch
            first += batch.num_rows


def _open_datasets_source(source: dict):
    """A `datasets` source: a `save_to_disk` folder (memory-mapped), a folder of data files, or a
    hub id (both streamed). A missing or unreadable folder is one line naming the source."""
    name, where = source["dataset"], source_location(source)
    split = source.get("dataset_split", "train")
    folder = Path(name).expanduser()
    if is_local_dataset(name):
        if not folder.is_dir():
            raise SeedError(
                f"{where}: no such folder (source '{source['name']}', dataset); a local "
                "datasets source is a folder of data files or one written by save_to_disk"
            )
        if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():
            return _saved_dataset(folder, split, where, source["name"])
    return load_hub_dataset(
        SeedError,
        where,
        "a jsonl or parquet source (format and path)",
        name,
        source.get("dataset_config"),
        split=split,
        streaming=True,
    )


def _saved_dataset(folder: Path, split: str, where: str, source_name: str):
    import datasets

    try:
        saved = datasets.load_from_disk(str(folder))
    except (OSError, ValueError, FileNotFoundError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SeedError(f"{where}: not a readable save_to_disk folder ({detail})") from exc
    if isinstance(saved, datasets.DatasetDict):
        if split not in saved:
            raise SeedError(
                f"{where}: no split '{split}' (source '{source_name}', dataset_split); the "
                f"folder has {', '.join(sorted(saved))}"
            )
        saved = saved[split]
    return saved


def _parquet_batches(path: Path, batch_rows: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    try:
        pq.ParquetFile(path).metadata  # noqa: B018 (fails early on a file that is not parquet)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SeedError(f"{path}: not a readable parquet file ({exc})") from exc
    first = 1
    try:
        for batch in iter_parquet(path, batch_rows):
            yield first, batch
            first += batch.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise SeedError(f"{path}: unreadable after row {first - 1} ({exc})") from exc


def source_location(source: dict) -> str:
    if source["format"] == "hf":
        return f"hf:{source['dataset']}" + (
            f"/{source['dataset_config']}" if source.get("dataset_config") else ""
        )
    return source["path"]


def source_path(source: dict, base_dir: Path | None = None) -> Path:
    path = Path(source["path"])
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise SeedError(f"{path}: seed file not found (source '{source['name']}')")
    return path
