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

import yaml

from .errors import ConfigError, yaml_error_line

FLAGS = ("truncated", "repetition", "refusal_or_meta", "boilerplate_opening", "too_short")
# Refusal and meta talk show up at the start; scanning only the opening keeps the regexes
# from matching a story's dialogue deep in the text.
OPENING_CHARS = 300
PATTERN_FLAGS = ("refusal_or_meta", "boilerplate_opening")


def default_quality() -> dict:
    """The config schema's defaults of the `quality` section, with the bundled patterns."""
    from .config import REPO_ROOT, schema_for

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


def duplicate_ngram_fraction(text: str, n: int) -> float:
    """Share of the text's word n-grams that occur more than once in it (0 for short texts)."""
    words = text.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 2 * n:
        return 0.0
    counts = Counter(grams)
    return sum(c for c in counts.values() if c > 1) / len(grams)


class QualityFlags:
    """Flags of one text at a time, with the settings of the `quality` config section."""

    def __init__(self, settings: dict, min_token_length: int):
        self.ngram = settings["repetition"]["ngram"]
        self.max_duplicate = settings["repetition"]["max_duplicate_fraction"]
        self.patterns = load_patterns(settings["patterns"])
        self.min_token_length = min_token_length
        self.drop = set(settings["drop"])

    def of(self, text: str, finish_reason: str | None, token_length: int) -> list[str]:
        opening = text.lstrip()[:OPENING_CHARS]
        flags = []
        if finish_reason == "length":
            flags.append("truncated")
        if duplicate_ngram_fraction(text, self.ngram) > self.max_duplicate:
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
    return " ".join(w.strip(".,;:!?\"'*#()[]").lower() for w in text.split()[:words])


class Diversity:
    """Openings (first 3 and 5 words) and distinct-2/3 of a sample, per template of a shard."""

    def __init__(self):
        self.openings: dict[str, dict[int, Counter]] = {}
        self.texts: dict[str, int] = Counter()
        self.sample: dict[str, list[str]] = {}
        # A seed's variants are adjacent in a shard: the texts of the current seed, and the
        # word 5-gram Jaccard similarity of every pair of texts of one seed so far.
        self._seed: str | None = None
        self._group: list[set] = []
        self.pairs = 0
        self.similarity_sum = 0.0
        self.similar_pairs = 0

    def add_variant(self, seed_id: str, text: str) -> None:
        if seed_id != self._seed:
            self._close_group()
            self._seed = seed_id
        words = text.lower().split()
        self._group.append({tuple(words[i : i + 5]) for i in range(len(words) - 4)})

    def _close_group(self) -> None:
        group, self._group = self._group, []
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                union = len(group[i] | group[j])
                jaccard = len(group[i] & group[j]) / union if union else 0.0
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
