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


One module per part: ngrams (normalization, hashing, match ratio), benchmarks (builders and
loading), index, step (the datatrove filter and the shard job), report, and reference (the
original rule, for tests and benchmarks).
"""

from cosmoforge.core.errors import BenchmarkError
from cosmoforge.stages.decont.benchmarks import (
    BENCHMARKS,
    BenchmarkItem,
    BenchmarkSpec,
    load_benchmark,
)
from cosmoforge.stages.decont.index import BenchmarkIndex, build_index
from cosmoforge.stages.decont.ngrams import (
    batch_ngram_hashes,
    match_ratio,
    ngram_hashes,
    normalize_tokens,
)
from cosmoforge.stages.decont.reference import reference_contaminated
from cosmoforge.stages.decont.report import contamination_report
from cosmoforge.stages.decont.step import BenchmarkDecontFilter, decontaminate_shard

__all__ = [
    "BENCHMARKS",
    "BenchmarkError",
    "BenchmarkDecontFilter",
    "BenchmarkIndex",
    "BenchmarkItem",
    "BenchmarkSpec",
    "batch_ngram_hashes",
    "build_index",
    "contamination_report",
    "decontaminate_shard",
    "load_benchmark",
    "match_ratio",
    "ngram_hashes",
    "normalize_tokens",
    "reference_contaminated",
]
