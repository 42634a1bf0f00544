"""The benchmark n-gram index: every n-gram maps to every item containing it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from cosmoforge.core.declare import Command, path_arg, settings_arg
from cosmoforge.core.errors import BenchmarkError
from cosmoforge.stages.decont.benchmarks import BENCHMARKS, BenchmarkItem, load_benchmark
from cosmoforge.stages.decont.ngrams import (
    _BITMAP_BITS,
    HASH_VERSION,
    _hash_table,
    batch_ngram_hashes,
    match_ratio,
    ngram_hashes,
    normalize_tokens,
)


class BenchmarkIndex:
    """Every benchmark n-gram -> every item containing it (sorted arrays, binary search)."""

    def __init__(self, items: list[BenchmarkItem], n: int = 10):
        self.n = n
        self.items = items
        self.item_norm = [" ".join(normalize_tokens(i.text)) for i in items]
        all_hashes, all_owners = batch_ngram_hashes([i.text for i in items], n)
        order = np.lexsort((all_owners, all_hashes))
        hashes, owners = all_hashes[order], all_owners[order]
        # An item repeating an n-gram owns it once.
        first = np.ones(len(hashes), dtype=bool)
        first[1:] = (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])
        self.hashes, self.owners = hashes[first], owners[first]

    def candidates(self, text: str) -> list[int]:
        doc = ngram_hashes(text, self.n)
        if not len(doc) or not len(self.hashes):
            return []
        return self._owners_of(doc)

    def check_batch(self, texts: list[str], threshold: float = 0.5) -> list[list[dict]]:
        """`check` for many documents at once: one vectorized n-gram lookup for the batch,
        difflib only for the documents that share an n-gram with some item."""
        results: list[list[dict]] = [[] for _ in texts]
        if not len(self.hashes):
            return results
        # The kernel returns only the n-grams the index has (bitmap, then hash table).
        hashes, doc = batch_ngram_hashes(texts, self.n, self._filters())
        if not len(hashes):
            return results
        docs, first = np.unique(doc, return_index=True)  # doc is ascending
        for d, group in zip(docs.tolist(), np.split(hashes, first[1:]), strict=True):
            owners = self._owners_of(group)
            results[d] = self._verify(normalize_tokens(texts[d]), owners, threshold)
        return results

    def _filters(self) -> tuple[np.ndarray, np.ndarray]:
        if getattr(self, "_filter_arrays", None) is None:
            bits = np.zeros(1 << _BITMAP_BITS, dtype=np.bool_)
            bits[self.hashes >> np.uint64(64 - _BITMAP_BITS)] = True
            self._filter_arrays = (
                np.packbits(bits, bitorder="little"),
                _hash_table(np.unique(self.hashes)),
            )
        return self._filter_arrays

    def _owners_of(self, doc_hashes: np.ndarray) -> list[int]:
        left = np.searchsorted(self.hashes, doc_hashes, side="left")
        right = np.searchsorted(self.hashes, doc_hashes, side="right")
        hits = [self.owners[a:b] for a, b in zip(left, right, strict=True) if b > a]
        return sorted(set(np.concatenate(hits).tolist())) if hits else []

    def _verify(self, tokens: list[str], candidates: list[int], threshold: float) -> list[dict]:
        found = []
        doc_norm = " ".join(tokens)
        for index in candidates:
            ratio = match_ratio(doc_norm, self.item_norm[index])
            if ratio > threshold:
                item = self.items[index]
                found.append(
                    {"benchmark": item.benchmark, "item_id": item.item_id, "ratio": round(ratio, 4)}
                )
        return found

    def check(self, text: str, threshold: float = 0.5) -> list[dict]:
        """Every benchmark item this text is contaminated with (ratio > threshold)."""
        return self._verify(normalize_tokens(text), self.candidates(text), threshold)

    def save(self, path: str | Path) -> None:
        from cosmoforge.core.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                hashes=self.hashes,
                owners=self.owners,
                n=np.array([self.n]),
                hash_version=np.array([HASH_VERSION]),
                items=np.array(json.dumps([i.__dict__ for i in self.items])),
            )

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkIndex:
        try:
            return cls._load(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise BenchmarkError(
                f"{path}: not a readable benchmark index ({type(exc).__name__}: {exc}); delete "
                "it and rerun (the benchmark_index rule rebuilds it)"
            ) from exc

    @classmethod
    def _load(cls, path: str | Path) -> BenchmarkIndex:
        data = np.load(path)
        version = int(data["hash_version"][0]) if "hash_version" in data else 1
        if version != HASH_VERSION:
            raise BenchmarkError(
                f"{path}: index built with n-gram hash version {version}, this cosmoforge uses "
                f"{HASH_VERSION}; delete it and rerun (the benchmark_index rule rebuilds it)"
            )
        index = cls.__new__(cls)
        index.n = int(data["n"][0])
        index.items = [BenchmarkItem(**d) for d in json.loads(str(data["items"]))]
        index.item_norm = [" ".join(normalize_tokens(i.text)) for i in index.items]
        index.hashes, index.owners = data["hashes"], data["owners"]
        return index


def build_index(sources: dict[str, dict], n: int) -> tuple[BenchmarkIndex, dict]:
    items, report = [], {}
    for name in sorted(sources):
        loaded, skipped = load_benchmark(name, sources[name])
        items += loaded
        report[name] = {
            "texts": len(loaded),
            "items": len({i.item_id for i in loaded}),
            "rows_skipped": skipped,
            "fields": BENCHMARKS[name].doc,
        }
    return BenchmarkIndex(items, n), report


# --- command line ------------------------------------------------------------------------------


def _benchmark_index_command(args) -> None:
    from cosmoforge.core.io import write_json

    s = args.settings
    index, report = build_index(s["benchmarks"], s["ngram"])
    write_json(args.report, report)
    index.save(args.out)


COMMANDS = (
    Command(
        "benchmark-index",
        "n-gram index of the benchmark items",
        _benchmark_index_command,
        {
            "--settings": {
                "required": True,
                "type": settings_arg("decontamination"),
                "help": "the decontamination section",
            },
            "--out": path_arg("the index file"),
            "--report": path_arg("what was indexed (JSON)"),
        },
    ),
)
