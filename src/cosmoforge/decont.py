"""Benchmark decontamination with Cosmopedia's rule, made exhaustive and deterministic.

The rule (Cosmopedia decontamination/decontaminate.py): normalize text (NFD, drop combining
marks, lowercase, word characters), find documents sharing a word n-gram (n = 10) with a
benchmark item, compare each such pair with difflib's SequenceMatcher, and call the document
contaminated when the matched length / the item's length > 0.5.

Cosmopedia kept only the last item per n-gram and compared each document with the item of its
first hit, in hash-randomized set order. Here every n-gram maps to *every* item containing it,
every candidate pair is checked, candidates are visited in sorted order, and n-grams are hashed
with a fixed function, so the result never depends on PYTHONHASHSEED or file order, and it is a
superset of what the original rule would remove.

Speed: the n-gram scan is two small numba kernels over the bytes of a batch of documents, with a
bitmap prefilter that leaves a few percent of the n-grams of clean text for the exact lookup;
difflib (cydifflib, bit-identical) runs only on candidate pairs.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from datatrove.pipeline.filters.base_filter import BaseFilter

try:  # bit-identical to difflib (checked in the tests), about 10x faster
    from cydifflib import SequenceMatcher
except ImportError:  # pragma: no cover - the pinned environment has cydifflib
    from difflib import SequenceMatcher

from .errors import CosmoforgeError

WORD = re.compile(r"\w+")
MIN_BLOCK_CHARS = 5  # matching blocks of at most this many characters are ignored, as upstream


class BenchmarkError(CosmoforgeError):
    pass


_COMBINING: dict[int, None] | None = None


def _combining_marks() -> dict[int, None]:
    global _COMBINING
    if _COMBINING is None:
        _COMBINING = {
            cp: None for cp in range(sys.maxunicode + 1) if unicodedata.combining(chr(cp))
        }
    return _COMBINING


def normalize_tokens(text: str) -> list[str]:
    """NFD, combining marks dropped, lowercase, word characters (Cosmopedia's tokenize)."""
    if not text.isascii():  # ASCII text is already NFD and has no combining marks
        text = unicodedata.normalize("NFD", text).translate(_combining_marks())
    return WORD.findall(text.lower())


# Byte classes: word bytes are ASCII [0-9A-Za-z_] and every byte of a multi-byte UTF-8
# character (non-ASCII text is first normalized into lowercase words). ASCII text is not
# lowercased in Python: the kernel reads bytes through _FOLD, which lowercases ASCII letters.
_WORD_BYTE = np.zeros(256, dtype=np.bool_)
_WORD_BYTE[[ord(c) for c in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"]] = (
    True
)
_WORD_BYTE[128:] = True
_FOLD = np.arange(256, dtype=np.uint64)
_FOLD[ord("A") : ord("Z") + 1] += 32
# The prefilter: one bit per value of an n-gram hash's top 24 bits, packed (2 MB, so it stays
# in the CPU caches); set for every n-gram of the index.
_BITMAP_BITS = 24
_K1 = np.uint64(0xFF51AFD7ED558CCD)  # odd multipliers (murmur3's)
_K2 = np.uint64(0xC4CEB9FE1A85EC53)
# Bumped whenever the n-gram hash changes: a saved index from another version is refused.
HASH_VERSION = 2


@numba.njit(cache=True, nogil=True)
def _token_hashes(data, offsets, word_byte, fold):  # pragma: no cover - compiled
    """Pass 1: a hash for every token (run of word bytes) and its document.

    A token's bytes are rotated in 8 bits at a time (its exact bytes for tokens of up to 8
    bytes; longer ones wrap around, and a collision only adds a candidate that difflib then
    rejects). No data-dependent branch per byte: a mispredicted branch at every token boundary
    costs more than the hashing, so the state is cleared with a mask on separator bytes and
    every byte stores a candidate that only a token end keeps (k += end)."""
    hashes = np.empty(len(data) // 2 + 2, np.uint64)
    docs = np.empty(len(data) // 2 + 2, np.int64)
    zero = np.uint64(0)
    one = np.uint64(1)
    k = 0
    for doc in range(len(offsets) - 1):
        token = zero
        previous = zero
        # Every document ends in a separator ("\n"), so its last token ends in its range.
        for i in range(offsets[doc], offsets[doc + 1]):
            word = np.uint64(word_byte[data[i]])
            hashes[k] = token
            docs[k] = doc
            k += previous & (word ^ one)  # the token ended at the previous byte
            rotated = (token << np.uint64(8)) | (token >> np.uint64(56))
            token = (rotated ^ fold[data[i]]) & (zero - word)  # cleared on separators
            previous = word
    return hashes[:k], docs[:k]


@numba.njit(cache=True, nogil=True)
def _ngram_hashes(tokens, token_docs, n, bitmap, table, only_indexed):  # pragma: no cover
    """Pass 2: every n-gram's hash, the rolling polynomial of its n token hashes, and its
    document. With `only_indexed`, only the n-grams of the index: the packed bitmap of top
    bits rules out all but a few percent (a well-predicted branch, 2 MB that stay cached), the
    open-addressing table (`_hash_table`) decides the rest exactly."""
    out_hashes = np.empty(len(tokens), np.uint64)
    out_docs = np.empty(len(tokens), np.int64)
    ring = np.zeros(n, np.uint64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    top = np.uint64(1)  # mult ** n: the weight of the token leaving the window
    for _ in range(n):
        top *= mult
    shift = np.uint64(64 - _BITMAP_BITS)
    slots = np.uint64(len(table) - 1)
    found = 0
    count = 0
    slot = 0
    rolling = np.uint64(0)
    current = -1
    for t in range(len(tokens)):
        if token_docs[t] != current:  # a new document: windows never span two
            current = token_docs[t]
            count = 0
            slot = 0
            rolling = np.uint64(0)
        token = tokens[t] * _K1
        rolling = rolling * mult + token
        if count >= n:
            rolling -= ring[slot] * top  # the token leaving the window
        ring[slot] = token
        slot += 1
        if slot == n:
            slot = 0
        count += 1
        if count < n:
            continue
        gram = rolling * _K2  # odd: a bijection whose top bits mix every input bit
        if gram == 0:  # 0 marks an empty slot of the table
            gram = np.uint64(1)
        if only_indexed:
            bit = gram >> shift
            if (bitmap[bit >> np.uint64(3)] >> (bit & np.uint64(7))) & 1 == 0:
                continue
            probe = gram & slots
            while table[probe] != gram and table[probe] != 0:
                probe = (probe + np.uint64(1)) & slots
            if table[probe] == 0:
                continue
        out_hashes[found] = gram
        out_docs[found] = current
        found += 1
    return out_hashes[:found].copy(), out_docs[:found].copy()


@numba.njit(cache=True, nogil=True)
def _hash_table(hashes):  # pragma: no cover - compiled
    """An open-addressing (linear probing) set of non-zero hashes, at most half full."""
    size = 1
    while size < 2 * len(hashes) + 2:
        size *= 2
    table = np.zeros(size, np.uint64)
    slots = np.uint64(size - 1)
    for h in hashes:
        probe = h & slots
        while table[probe] != h and table[probe] != 0:
            probe = (probe + np.uint64(1)) & slots
        table[probe] = h
    return table


def _normalized_batch(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The normalized bytes of a batch, and where each document starts (plus the end)."""
    # ASCII text goes in as it is (the kernel folds case); other text goes through the full
    # normalization. One join and one encode for the whole batch.
    parts = [t if t.isascii() else " ".join(normalize_tokens(t)) for t in texts]
    text = "\n".join(parts) + "\n"
    data = text.encode("utf-8")
    if len(data) == len(text):
        lengths = [len(p) + 1 for p in parts]
    else:  # multi-byte characters: count bytes per document
        lengths = [len(p) + 1 if p.isascii() else len(p.encode("utf-8")) + 1 for p in parts]
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.frombuffer(data, dtype=np.uint8), offsets


_NOTHING = (np.zeros(1, dtype=np.uint8), np.zeros(1, dtype=np.uint64))


def batch_ngram_hashes(
    texts: list[str], n: int, index: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram of every text (in order), and the text each belongs to; with
    an index's (bitmap, hash table), only the n-grams the index has. Two compiled passes
    (numba): token hashes over the bytes, then rolling n-gram hashes over the tokens. Equal
    n-grams always hash equal; a collision only adds a candidate that difflib then rejects."""
    data, offsets = _normalized_batch(texts)
    tokens, token_docs = _token_hashes(data, offsets, _WORD_BYTE, _FOLD)
    bitmap, table = index or _NOTHING
    return _ngram_hashes(tokens, token_docs, n, bitmap, table, index is not None)


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """64-bit hashes of every word n-gram of a text, sorted and unique."""
    return np.unique(batch_ngram_hashes([text], n)[0])


def match_ratio(document_norm: str, item_norm: str) -> float:
    """Cosmopedia's score: characters of the item covered by long matching blocks / its length."""
    if not item_norm:
        return 0.0
    matcher = SequenceMatcher(None, document_norm, item_norm, autojunk=False)
    blocks = [
        document_norm[b.a : b.a + b.size]
        for b in matcher.get_matching_blocks()
        if b.size > MIN_BLOCK_CHARS
    ]
    matched = " ".join("".join(blocks).split())
    return len(matched) / len(item_norm)


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    item_id: str
    text: str


# ---------------------------------------------------------------------------------------------
# Benchmark text builders: one per benchmark, reading the hub layouts and field names.
# ---------------------------------------------------------------------------------------------


def _choices_text(choices) -> list[str]:
    if isinstance(choices, dict):  # ARC / OpenBookQA: {"text": [...], "label": [...]}
        choices = choices.get("text")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise ValueError("choices must be a list of strings or {text: [...]}")
    return choices


def _join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def build_mmlu(row):
    return [_join(row["question"], *_choices_text(row["choices"]))]


def build_hellaswag(row):
    context = row.get("ctx") or _join(row.get("ctx_a", ""), row.get("ctx_b", ""))
    return [_join(context, *_choices_text(row["endings"]))]


def build_piqa(row):
    return [_join(row["goal"], row["sol1"], row["sol2"])]


def build_siqa(row):
    return [_join(row["context"], row["question"], row["answerA"], row["answerB"], row["answerC"])]


def build_winogrande(row):
    # One text per option filled into the blank: a document containing either reads as a copy.
    return [row["sentence"].replace("_", row[key], 1) for key in ("option1", "option2")]


def build_openbookqa(row):
    return [_join(row["question_stem"], *_choices_text(row["choices"]))]


def build_arc(row):
    return [_join(row["question"], *_choices_text(row["choices"]))]


def build_boolq(row):
    return [_join(row["passage"], row["question"])]


@dataclass(frozen=True)
class BenchmarkSpec:
    builder: object
    fields: tuple[str, ...]
    id_field: str | None
    hub: tuple[str, str | None, str]  # load_dataset name, config, split
    doc: str


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "mmlu": BenchmarkSpec(
        build_mmlu,
        ("question", "choices"),
        None,
        ("cais/mmlu", "all", "test"),
        "test split; question + each choice",
    ),
    "hellaswag": BenchmarkSpec(
        build_hellaswag,
        ("endings",),
        "ind",
        ("Rowan/hellaswag", None, "validation"),
        "validation split; ctx (or ctx_a + ctx_b) + each ending",
    ),
    "piqa": BenchmarkSpec(
        build_piqa,
        ("goal", "sol1", "sol2"),
        None,
        ("ybisk/piqa", None, "validation"),
        "validation split; goal + sol1 + sol2",
    ),
    "siqa": BenchmarkSpec(
        build_siqa,
        ("context", "question", "answerA", "answerB", "answerC"),
        None,
        ("allenai/social_i_qa", None, "validation"),
        "validation split; context + question + answerA/B/C",
    ),
    "winogrande": BenchmarkSpec(
        build_winogrande,
        ("sentence", "option1", "option2"),
        None,
        ("allenai/winogrande", "winogrande_xl", "validation"),
        "validation split (winogrande_xl); sentence with option1, and "
        "with option2, filled in (two texts, one item)",
    ),
    "openbookqa": BenchmarkSpec(
        build_openbookqa,
        ("question_stem", "choices"),
        "id",
        ("allenai/openbookqa", "main", "test"),
        "test split (main); question_stem + each choice",
    ),
    "arc_easy": BenchmarkSpec(
        build_arc,
        ("question", "choices"),
        "id",
        ("allenai/ai2_arc", "ARC-Easy", "test"),
        "test split; question + each choice",
    ),
    "arc_challenge": BenchmarkSpec(
        build_arc,
        ("question", "choices"),
        "id",
        ("allenai/ai2_arc", "ARC-Challenge", "test"),
        "test split; question + each choice",
    ),
    "boolq": BenchmarkSpec(
        build_boolq,
        ("question", "passage"),
        None,
        ("google/boolq", None, "validation"),
        "validation split; passage + question",
    ),
}


def _read_rows(path: Path) -> Iterator[tuple[int, object]]:
    if not path.is_file():
        raise BenchmarkError(f"{path}: benchmark file not found")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable parquet
            raise BenchmarkError(f"{path}: not a readable parquet file ({exc})") from exc
        yield from enumerate(table.to_pylist(), start=1)
        return
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield line_no, json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BenchmarkError(
                    f"{path}: row {line_no}: not valid UTF-8 JSON ({exc})"
                ) from exc


def load_benchmark(name: str, source: dict) -> tuple[list[BenchmarkItem], int]:
    """Items of one benchmark from a local file (parquet/jsonl) or the hub; and rows skipped.

    A missing field stops with an error naming file, row and field; an empty row is skipped
    and counted.
    """
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark '{name}'; known: {sorted(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    if "path" in source:
        where = source["path"]
        rows = _read_rows(Path(source["path"]))
    else:
        import datasets

        hub_name, config, split = spec.hub
        where = f"hf:{hub_name}"
        rows = enumerate(datasets.load_dataset(hub_name, config, split=split), start=1)
    items, skipped = [], 0
    for row_no, row in rows:
        if not isinstance(row, dict):
            raise BenchmarkError(f"{where}: row {row_no}: not an object")
        for field_name in spec.fields:
            if field_name not in row or row[field_name] is None:
                raise BenchmarkError(f"{where}: row {row_no}: field '{field_name}' is missing")
        try:
            texts = spec.builder(row)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BenchmarkError(f"{where}: row {row_no}: {exc}") from exc
        texts = [t for t in texts if normalize_tokens(t)]
        if not texts:
            skipped += 1
            continue
        item_id = (
            str(row.get(spec.id_field)) if spec.id_field and row.get(spec.id_field) else str(row_no)
        )
        items += [BenchmarkItem(name, f"{name}:{item_id}", t) for t in texts]
    if not items:
        # An empty file would silently decontaminate against nothing.
        raise BenchmarkError(
            f"{where}: no benchmark items ({skipped} row(s) without text); fix the file, or "
            f"remove '{name}' from decontamination.benchmarks to leave it out"
        )
    return items, skipped


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
        from .io import atomic_path

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


def reference_contaminated(
    texts: Iterable[str], items: list[BenchmarkItem], n: int = 10, threshold: float = 0.5
) -> list[bool]:
    """Cosmopedia's original rule, for the benchmark comparison: last owner per n-gram, first hit
    per document (here in a fixed order), then difflib."""
    owner = {}
    for index, item in enumerate(items):
        tokens = normalize_tokens(item.text)
        for i in range(len(tokens) - n + 1):
            owner[tuple(tokens[i : i + n])] = index
    out = []
    for text in texts:
        tokens = normalize_tokens(text)
        hit = next(
            (
                owner[g]
                for g in (tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
                if g in owner
            ),
            None,
        )
        if hit is None:
            out.append(False)
            continue
        item_norm = " ".join(normalize_tokens(items[hit].text))
        out.append(match_ratio(" ".join(tokens), item_norm) > threshold)
    return out


# ---------------------------------------------------------------------------------------------
# As a datatrove step, one shard per job (the same machinery as dedup), and the report.
# ---------------------------------------------------------------------------------------------


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

    from .dedup import ShardReader, run_rank
    from .io import read_input_table, write_parquet

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


def contamination_report(
    contaminated_files: list[str | Path],
    groups: dict[str, list[str]],
    benchmarks: list[str],
    params: dict,
    out_csv: str | Path,
    out_json: str | Path,
) -> dict:
    """Cosmopedia's table: rows = split groups, columns = benchmarks, cells = removed samples
    (unique benchmark items)."""
    import pyarrow.parquet as pq

    from .io import write_json, write_text

    group_of = {split: group for group, splits in groups.items() for split in splits}
    samples = {g: {b: set() for b in benchmarks} for g in groups}
    items = {g: {b: set() for b in benchmarks} for g in groups}
    for path in contaminated_files:
        for row in pq.read_table(
            path, columns=["sample_id", "split", "benchmark_matches"]
        ).to_pylist():
            group = group_of.get(row["split"], row["split"])
            samples.setdefault(group, {b: set() for b in benchmarks})
            items.setdefault(group, {b: set() for b in benchmarks})
            for match in json.loads(row["benchmark_matches"]):
                samples[group][match["benchmark"]].add(row["sample_id"])
                items[group][match["benchmark"]].add(match["item_id"])
    table = {g: {b: [len(samples[g][b]), len(items[g][b])] for b in benchmarks} for g in samples}
    lines = ["group," + ",".join(benchmarks)]
    for group, cells in table.items():
        lines.append(f'"{group}",' + ",".join(f'"{n} ({u})"' for n, u in cells.values()))
    write_text(out_csv, "\n".join(lines) + "\n")
    report = {
        "parameters": params,
        "table": table,
        "contaminated": len({s for g in samples.values() for b in g.values() for s in b}),
    }
    write_json(out_json, report)
    return report
