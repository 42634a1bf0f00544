"""Quality flags of generated texts: measured per row, counted per split and template, and
(where the config says so) a reason to leave a row out of the release.

- `truncated`: the engine stopped at max_tokens (finish_reason == "length").
- `repetition`: a loop: the share of word n-grams that occur more than once in the text.
- `refusal_or_meta`: the model talks about itself or the task instead of writing it ("As an
  AI", "Sure, here is", "I cannot"); regexes over the opening of the text.
- `boilerplate_opening`: a stock opening line; start-anchored regexes.
- `too_short`: fewer tokens than `release.min_token_length`.

The regexes are data (`prompts/quality.yaml`, `quality.patterns`); the texts are kept as
generated, flags never edit them.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from cosmoforge.core.errors import ConfigError, yaml_error_line

FLAGS = ("truncated", "repetition", "refusal_or_meta", "boilerplate_opening", "too_short")
# Refusal and meta talk show up at the start; scanning only the opening keeps the regexes
# from matching a story's dialogue deep in the text.
OPENING_CHARS = 300
PATTERN_FLAGS = ("refusal_or_meta", "boilerplate_opening")


def default_quality() -> dict:
    """The config schema's defaults of the `quality` section, with the bundled patterns."""
    from cosmoforge.core.config import REPO_ROOT, schema_for

    properties = schema_for("quality")["properties"]
    defaults = {key: value.get("default") for key, value in properties.items()}
    defaults["repetition"] = {
        k: v["default"] for k, v in properties["repetition"]["properties"].items()
    }
    defaults["patterns"] = str(REPO_ROOT / defaults["patterns"])
    return defaults


def load_patterns(path: str | Path) -> dict[str, list[re.Pattern]]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_line(path, exc)) from exc
    except OSError as exc:
        raise ConfigError(f"quality.patterns: cannot read {path} ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected the keys {list(PATTERN_FLAGS)}")
    patterns = {}
    for flag in PATTERN_FLAGS:
        entries = data.get(flag)
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ConfigError(f"{path}: field '{flag}' must be a list of regexes")
        compiled = []
        for n, entry in enumerate(entries):
            try:
                compiled.append(re.compile(entry, re.IGNORECASE))
            except re.error as exc:
                raise ConfigError(f"{path}: {flag}[{n}]: not a valid regex ({exc})") from exc
        patterns[flag] = compiled
    return patterns


class TextKeys:
    """The word n-grams of one text as 64-bit integer keys, which numpy sorts and compares: a
    Python set of word tuples cost ~1 ms per text of Cosmopedia's length, this ~0.1 ms.

    Words are the lowercased text split at ASCII whitespace (UTF-8 bytes). A polynomial hash of
    the text's non-space bytes, kept as prefix sums, gives any run of whole words its key in
    O(1), so the keys of every n come from one pass over the bytes. The keys depend on the text
    alone: the same on every run and in every process. Two different n-grams share a key with
    a chance of about 2**-64.
    """

    __slots__ = ("_prefix", "_starts", "_ends")

    def __init__(self, text: str):
        data = np.frombuffer(text.lower().encode("utf-8"), np.uint8)
        in_word = ~_ASCII_SPACE[data]
        before = np.zeros_like(in_word)
        before[1:] = in_word[:-1]
        word_bytes = data[in_word]
        # The first byte of a word hashes differently, so "ab c" and "a bc" differ.
        first = (in_word & ~before)[in_word]
        values = np.where(first, _FIRST_BYTE[word_bytes], _BYTE[word_bytes])
        values *= _powers(len(values))[0][: len(values)]
        self._prefix = np.zeros(len(values) + 1, np.uint64)
        np.cumsum(values, out=self._prefix[1:])
        self._starts = np.flatnonzero(first)
        self._ends = np.append(self._starts[1:], len(values))

    def ngrams(self, n: int) -> np.ndarray:
        """One key per word n-gram, in text order."""
        count = len(self._starts) - n + 1
        if count <= 0:
            return np.empty(0, np.uint64)
        starts, ends = self._starts[:count], self._ends[n - 1 :]
        return (self._prefix[ends] - self._prefix[starts]) * _powers(len(self._prefix))[1][starts]


_ASCII_SPACE = np.zeros(256, bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # what str.split() splits at
_KEY_RNG = np.random.default_rng(20241201)
_BYTE = _KEY_RNG.integers(0, 2**63, 256, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_FIRST_BYTE = _KEY_RNG.integers(0, 2**63, 256, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_BASE = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64 (uint64 arithmetic wraps)
_POWERS: list[np.ndarray] = []


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Powers of the base and of its inverse modulo 2**64, at least `length` of each (a table
    grown by doubling and shared by all texts)."""
    if not _POWERS or len(_POWERS[0]) < length:
        size = max(1 << 14, 1 << (length - 1).bit_length())
        tables = []
        for base in (_BASE, pow(_BASE, -1, 2**64)):
            table = np.full(size, base, np.uint64)
            table[0] = 1
            tables.append(np.cumprod(table, dtype=np.uint64))
        _POWERS[:] = tables
    return _POWERS[0], _POWERS[1]


def repeated_share(keys: np.ndarray, n: int) -> float:
    """Share of the n-gram keys that occur more than once (0 below 2n n-grams)."""
    if len(keys) < 2 * n:
        return 0.0
    keys = np.sort(keys)
    same = keys[1:] == keys[:-1]
    repeated = np.zeros(len(keys), bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    return float(np.count_nonzero(repeated)) / len(keys)


def unique_sorted(keys: np.ndarray) -> np.ndarray:
    """np.unique's result without its general-case overhead (14 vs 63 us on 730 keys)."""
    keys = np.sort(keys)
    if len(keys) < 2:
        return keys
    return keys[np.append(True, keys[1:] != keys[:-1])]


def duplicate_ngram_fraction(text: str, n: int) -> float:
    """Share of the text's word n-grams that occur more than once in it (0 for short texts)."""
    return repeated_share(TextKeys(text).ngrams(n), n)


class QualityFlags:
    """Flags of one text at a time, with the settings of the `quality` config section."""

    def __init__(self, settings: dict, min_token_length: int):
        self.ngram = settings["repetition"]["ngram"]
        self.max_duplicate = settings["repetition"]["max_duplicate_fraction"]
        self.patterns = load_patterns(settings["patterns"])
        self.min_token_length = min_token_length
        self.drop = set(settings["drop"])

    def of(
        self,
        text: str,
        finish_reason: str | None,
        token_length: int,
        keys: TextKeys | None = None,
    ) -> list[str]:
        """The text's flags; `keys`: its TextKeys where the caller has them already."""
        opening = text.lstrip()[:OPENING_CHARS]
        flags = []
        if finish_reason == "length":
            flags.append("truncated")
        grams = (keys if keys is not None else TextKeys(text)).ngrams(self.ngram)
        if repeated_share(grams, self.ngram) > self.max_duplicate:
            flags.append("repetition")
        for flag in PATTERN_FLAGS:
            if any(p.search(opening) for p in self.patterns[flag]):
                flags.append(flag)
        if token_length < self.min_token_length:
            flags.append("too_short")
        return flags

    def drop_reason(self, flags: list[str]) -> str | None:
        """The first flag (in FLAGS order) that leaves the row out, if any."""
        return next((f for f in flags if f in self.drop), None)


# --- diversity ---------------------------------------------------------------------------------

OPENING_WORDS = (3, 5)
# Per shard and template, the most frequent openings kept for the run's totals: the run's top 5
# are then exact unless an opening is common overall but rare in every shard.
OPENINGS_KEPT = 50
DISTINCT_SAMPLE = 200


def opening(text: str, words: int) -> str:
    return " ".join(w.strip(".,;:!?\"'*#()[]").lower() for w in text.split(maxsplit=words)[:words])


class Diversity:
    """Openings (first 3 and 5 words) and distinct-2/3 of a sample, per template of a shard."""

    def __init__(self):
        self.openings: dict[str, dict[int, Counter]] = {}
        self.texts: dict[str, int] = Counter()
        self.sample: dict[str, list[str]] = {}
        # A seed's variants are adjacent in a shard: the texts of the current seed, and the
        # word 5-gram Jaccard similarity of every pair of texts of one seed so far.
        self._seed: str | None = None
        self._group: list[np.ndarray] = []
        self.pairs = 0
        self.similarity_sum = 0.0
        self.similar_pairs = 0

    def add_variant(self, seed_id: str, text: str, keys: TextKeys | None = None) -> None:
        if seed_id != self._seed:
            self._close_group()
            self._seed = seed_id
        self._group.append(unique_sorted((keys if keys is not None else TextKeys(text)).ngrams(5)))

    def _close_group(self) -> None:
        group, self._group = self._group, []
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                shared = len(np.intersect1d(group[i], group[j], assume_unique=True))
                union = len(group[i]) + len(group[j]) - shared
                jaccard = shared / union if union else 0.0
                self.pairs += 1
                self.similarity_sum += jaccard
                self.similar_pairs += jaccard > 0.5

    def variant_similarity(self) -> dict:
        self._close_group()
        return {
            "pairs": self.pairs,
            "mean_jaccard": round(self.similarity_sum / self.pairs, 4) if self.pairs else None,
            "pairs_above_0_5": self.similar_pairs,
        }

    def add(self, template: str, text: str) -> None:
        counters = self.openings.setdefault(template, {n: Counter() for n in OPENING_WORDS})
        for n in OPENING_WORDS:
            counters[n][opening(text, n)] += 1
        self.texts[template] += 1
        sample = self.sample.setdefault(template, [])
        if len(sample) < DISTINCT_SAMPLE:
            sample.append(text)

    def stats(self) -> dict:
        out = {}
        for template, counters in sorted(self.openings.items()):
            out[template] = {
                "texts": self.texts[template],
                **{
                    f"openings_{n}": dict(counters[n].most_common(OPENINGS_KEPT))
                    for n in OPENING_WORDS
                },
                **{f"distinct_{k}": distinct_n(self.sample[template], k) for k in (2, 3)},
                "distinct_sample": len(self.sample[template]),
            }
        return out


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams / all word n-grams over the texts (1.0: no n-gram repeats)."""
    grams = [
        tuple(words[i : i + n])
        for words in (t.lower().split() for t in texts)
        for i in range(len(words) - n + 1)
    ]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def merge_diversity(per_shard: list[dict]) -> dict[str, dict]:
    """A run's diversity per template from its shards' figures: the share of texts whose
    opening is one of the 5 most common, and distinct-2/3 weighted by the sampled texts."""
    merged: dict[str, dict] = {}
    for shard in per_shard:
        for template, figures in shard.items():
            m = merged.setdefault(
                template,
                {
                    "texts": 0,
                    "sampled": 0,
                    "d2": 0.0,
                    "d3": 0.0,
                    **{n: Counter() for n in OPENING_WORDS},
                },
            )
            m["texts"] += figures["texts"]
            m["sampled"] += figures["distinct_sample"]
            m["d2"] += figures["distinct_2"] * figures["distinct_sample"]
            m["d3"] += figures["distinct_3"] * figures["distinct_sample"]
            for n in OPENING_WORDS:
                m[n].update(figures[f"openings_{n}"])
    out = {}
    for template, m in sorted(merged.items()):
        entry = {"texts": m["texts"]}
        for n in OPENING_WORDS:
            top = m[n].most_common(5)
            entry[f"top5_share_{n}"] = round(sum(c for _, c in top) / m["texts"], 4)
            entry[f"top_openings_{n}"] = [o for o, _ in top]
        entry["distinct_2"] = round(m["d2"] / m["sampled"], 4) if m["sampled"] else None
        entry["distinct_3"] = round(m["d3"] / m["sampled"], 4) if m["sampled"] else None
        out[template] = entry
    return out
