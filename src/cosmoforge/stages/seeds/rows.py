"""What makes a seed row usable: its fields mapped onto its kind's, checked one row at a time or
a whole Arrow batch at once, and the bounded-memory set of seed ids that finds duplicates."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from cosmoforge.core.contracts import KINDS


class BadRow(Exception):
    def __init__(self, reason: str, field_name: str | None, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.field_name = field_name
        self.detail = detail


def normalize_row(raw: Any, kind: str, fields: dict[str, str]) -> dict[str, str | None]:
    """Map a raw row onto the kind's fields; raise BadRow naming the (source) field at fault."""
    if isinstance(raw, BadRow):
        raise raw
    if not isinstance(raw, dict):
        raise BadRow("not_an_object", None, f"row is a {type(raw).__name__}, not an object")
    required, optional = KINDS[kind]
    out: dict[str, str | None] = {}
    for name in required + optional:
        column = fields.get(name, name)
        value = raw.get(column)
        if name == "id" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None:
            if name in required:
                raise BadRow("missing_field", column, f"field '{column}' is missing")
            out[name] = None
            continue
        if not isinstance(value, str):
            raise BadRow(
                "wrong_type", column, f"field '{column}' is {type(value).__name__}, expected string"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRow("undecodable", column, f"field '{column}' is not valid UTF-8") from None
        if not value.strip():
            if name in required:
                raise BadRow("empty_field", column, f"field '{column}' is empty")
            out[name] = None
            continue
        out[name] = value
    return out


def _arrow_type_name(type_: pa.DataType) -> str:
    if pa.types.is_integer(type_):
        return "int"
    if pa.types.is_floating(type_):
        return "float"
    if pa.types.is_boolean(type_):
        return "bool"
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return "list"
    if pa.types.is_struct(type_) or pa.types.is_map(type_):
        return "dict"
    return str(type_)


def _normalize_arrow(
    batch: pa.RecordBatch, kind: str, fields: dict[str, str]
) -> tuple[dict[str, pa.Array], list[tuple[int, BadRow]]]:
    """Column-wise `normalize_row`: the kind's fields as string arrays, and the bad rows (index
    in the batch, the first failing field in the same order as `normalize_row` checks them)."""
    required, optional = KINDS[kind]
    n = batch.num_rows
    bad: dict[int, BadRow] = {}
    columns: dict[str, pa.Array] = {}
    names = set(batch.schema.names)
    for name in required + optional:
        column = fields.get(name, name)
        if column not in names:
            values = pa.nulls(n, pa.string())
        else:
            values = batch.column(column)
            castable = pa.types.is_large_string(values.type) or pa.types.is_string_view(values.type)
            if castable or (name == "id" and pa.types.is_integer(values.type)):
                values = values.cast(pa.string())
            elif not pa.types.is_string(values.type) and not pa.types.is_null(values.type):
                typename = _arrow_type_name(values.type)
                for i in np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False)):
                    bad.setdefault(
                        int(i),
                        BadRow(
                            "wrong_type",
                            column,
                            f"field '{column}' is {typename}, expected string",
                        ),
                    )
                values = pa.nulls(n, pa.string())
            if pa.types.is_null(values.type):
                values = pa.nulls(n, pa.string())
        missing = values.is_null().to_numpy(zero_copy_only=False)
        blank = _blank(values)
        if name in required:
            for i in np.flatnonzero(missing):
                bad.setdefault(
                    int(i), BadRow("missing_field", column, f"field '{column}' is missing")
                )
            for i in np.flatnonzero(blank):
                bad.setdefault(int(i), BadRow("empty_field", column, f"field '{column}' is empty"))
        elif blank.any():
            values = pc.if_else(pa.array(blank), pa.scalar(None, pa.string()), values)
        columns[name] = values
    return columns, sorted(bad.items())


def _blank(values: pa.Array) -> np.ndarray:
    """Which strings are empty or whitespace only. Trimming whole texts copies them all, so only
    a short prefix is trimmed; the rare all-space prefixes are then checked in full."""
    prefix = pc.utf8_slice_codeunits(values, 0, 32)
    maybe = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(prefix)), 0)
    maybe = maybe.fill_null(False).to_numpy(zero_copy_only=False)
    blank = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(maybe):
        blank[i] = not values[int(i)].as_py().strip()
    return blank


class IdHashSet:
    """An exact set of 64-bit hashes in open addressing (linear probing), grown by doubling.

    `add` returns, for each hash of a batch, whether it was already present (also when an
    earlier hash of the same batch was equal). 0 is the empty-slot marker, so hash 0 is stored
    as 1 (which at worst makes one more suspect, checked exactly like any other).
    """

    def __init__(self, capacity: int = 1 << 16):
        self.slots = np.zeros(capacity, dtype=np.uint64)
        self.size = 0

    def add(self, hashes: np.ndarray) -> np.ndarray:
        hashes = np.where(hashes == 0, np.uint64(1), hashes).astype(np.uint64)
        while (self.size + len(hashes)) * 4 > len(self.slots) * 3:
            self._grow()
        seen = np.zeros(len(hashes), dtype=np.bool_)
        self.size += _probe()(self.slots, hashes, seen, True)
        return seen

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """For each hash, whether it is in the set (nothing is added)."""
        hashes = np.where(hashes == 0, np.uint64(1), hashes).astype(np.uint64)
        found = np.zeros(len(hashes), dtype=np.bool_)
        _probe()(self.slots, hashes, found, False)
        return found

    def _grow(self) -> None:
        old = self.slots[self.slots != 0]
        self.slots = np.zeros(len(self.slots) * 2, dtype=np.uint64)
        self.size = _probe()(self.slots, old, np.zeros(len(old), dtype=np.bool_), True)


def _probe_py(slots, hashes, found, insert):  # pragma: no cover - compiled by numba below
    """Marks in `found` each hash already in `slots`; with `insert`, adds the others (returns
    how many were added)."""
    mask = np.uint64(len(slots) - 1)
    added = 0
    for i in range(len(hashes)):
        h = hashes[i]
        j = (h * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20) & mask
        while True:
            slot = slots[j]
            if slot == 0:
                if insert:
                    slots[j] = h
                    added += 1
                break
            if slot == h:
                found[i] = True
                break
            j = (j + np.uint64(1)) & mask
    return added


@functools.cache
def _probe():
    # Compiled on first use, not at import: this module is imported by the generation job too,
    # and vLLM's start-up trips over llvmlite's objects when numba is loaded in its process.
    import numba

    return numba.njit(cache=True, nogil=True)(_probe_py)


def hash_ids(ids: list[str]) -> np.ndarray:
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(i) for i in ids), dtype=np.uint64, count=len(ids))
