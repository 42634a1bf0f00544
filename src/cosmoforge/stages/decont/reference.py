"""Cosmopedia's original decontamination rule, in one place: the oracle of the tests (which
check that cosmoforge removes a superset of what it removes) and the baseline of
measure/decont_speed.py.

The rule as decontaminate.py has it: the *last* item owning each n-gram, the *first* hit of a
document, then difflib. The first hit is taken in text order here (upstream: set order, which
varies with PYTHONHASHSEED). `stdlib=True` is the rule written with the standard library only
(a per-character combining-mark filter, difflib): the speed baseline; the default uses the
project's normalizer and cydifflib, which give the same answers faster.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable

from cosmoforge.stages.decont.benchmarks import BenchmarkItem
from cosmoforge.stages.decont.ngrams import match_ratio, normalize_tokens


def stdlib_tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.findall(r"\w+", text.lower())


class OriginalRule:
    def __init__(
        self, items: list[BenchmarkItem], n: int = 10, threshold: float = 0.5, stdlib=False
    ):
        self.items, self.n, self.threshold = items, n, threshold
        self.tokens = stdlib_tokens if stdlib else normalize_tokens
        self.matcher = difflib.SequenceMatcher if stdlib else None
        self.owner: dict[tuple, int] = {}
        for index, item in enumerate(items):
            words = self.tokens(item.text)
            for i in range(len(words) - n + 1):
                self.owner[tuple(words[i : i + n])] = index

    def contaminated(self, text: str) -> bool:
        words, n = self.tokens(text), self.n
        grams = (tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        hit = next((self.owner[g] for g in grams if g in self.owner), None)
        if hit is None:
            return False
        item_norm = " ".join(self.tokens(self.items[hit].text))
        ratio = match_ratio(" ".join(words), item_norm, self.matcher)
        return ratio > self.threshold


def reference_contaminated(
    texts: Iterable[str], items: list[BenchmarkItem], n: int = 10, threshold: float = 0.5
) -> list[bool]:
    rule = OriginalRule(items, n, threshold)
    return [rule.contaminated(text) for text in texts]
