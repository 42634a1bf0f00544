"""The seed quality gates: what a valid row goes through before it is written.

In order, on one batch of a source's valid rows (columns of the kind's fields):

1. *Repair* (``seeds.repair_text``): mojibake (UTF-8 read as Latin-1 or cp1252), C0/C1 control
   characters and lone surrogates are fixed by ftfy. A cheap vectorized screen picks the values
   that may need it, so clean text costs one regex scan and is never rewritten.
2. *HTML to text* (``seeds.html_to_text``): in the kinds listed, a field with markup (a closing
   or void tag, or an entity) is converted to plain text by resiliparse (lists become bullets,
   entities characters).
3. *Length* (``seeds.min_chars``, ``seeds.max_chars``): the kind's main field, measured after
   1 and 2.
4. *Language* (``seeds.languages``): for the kinds listed, the main field's language. Two
   detectors, both with their models in their wheels: resiliparse's n-gram profiles screen
   every seed (~13 us); a seed they put in an allowed language is kept, and only the others
   go to py3langid (~250 us), whose probabilities decide. A seed is left out only when
   py3langid gives another language at least ``seeds.language_min_confidence``: short or mixed
   texts, whose guesses are weak, stay.

A repair changes a value and is counted (``repaired``); a gate leaves the row out and is counted
by reason (``gated``). Both are per source in the seed report and per split in the card.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cosmoforge.core.contracts import KINDS, MAIN_FIELD

# Values that may need ftfy: a C0 control other than tab/newline/carriage return, a C1 control,
# U+FFFD, or the two-character signatures of UTF-8 decoded as Latin-1/cp1252 (a lead byte shown
# as Â, Ã, Å.., or â followed by a continuation byte's Latin-1 or cp1252 character).
_NEEDS_REPAIR = (
    r"[\x{00}-\x{08}\x{0b}\x{0c}\x{0e}-\x{1f}\x{7f}-\x{9f}\x{fffd}]"
    r"|[\x{c2}-\x{df}][\x{80}-\x{bf}\x{152}\x{153}\x{160}\x{161}\x{178}\x{17d}\x{17e}\x{192}"
    r"\x{2c6}\x{2dc}\x{2013}\x{2014}\x{2018}-\x{201e}\x{2020}-\x{2022}\x{2026}\x{2030}"
    r"\x{2039}\x{203a}\x{20ac}\x{2122}]"
    r"|\x{e2}[\x{80}-\x{bf}\x{20ac}\x{2122}\x{201e}\x{201a}]"
)
# Markup: a closing tag (</p>, </li>), a void tag (<br/>, <img ...>) or an entity (&amp; &#39;
# &#x27;). Opening tags alone do not count: "if a<b and c>d" is mathematics, not a <b> tag.
_LOOKS_LIKE_HTML = (
    r"</[A-Za-z][A-Za-z0-9]*\s*>|<(br|hr|img|wbr)\b[^<>]*>"
    r"|&([A-Za-z][A-Za-z0-9]{1,9}|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});"
)
# Characters of the main field the language is guessed from: py3langid's cost grows with the
# text, and its guess is settled long before 600 characters of one page.
LANGUAGE_CHARS = 600


@functools.cache
def _fixer():
    import ftfy

    # Only the repairs: quotes, ligatures, widths, line breaks and Unicode normalization stay as
    # the source wrote them, and entities stay (HTML is the next gate's, and only for the kinds
    # that may hold it).
    config = ftfy.TextFixerConfig(
        unescape_html=False,
        fix_latin_ligatures=False,
        fix_character_width=False,
        uncurl_quotes=False,
        fix_line_breaks=False,
        normalization=None,
        explain=False,
    )
    return functools.partial(ftfy.fix_text, config=config)


def _html_text(value: str) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(
        value, main_content=False, list_bullets=True, alt_texts=False, preserve_formatting=True
    ).strip()


@functools.cache
def _identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_DIR / MODEL_FILE, norm_probs=True)


def _strings(values) -> pa.Array:
    return values if isinstance(values, pa.Array) else pa.array(values, pa.string())


def _rewrite(values, pattern: str, change) -> tuple[pa.Array, np.ndarray]:
    """`values` with `change` applied where `pattern` matches; and which rows changed."""
    values = _strings(values)
    hits = pc.fill_null(pc.match_substring_regex(values, pattern), False).to_numpy(
        zero_copy_only=False
    )
    changed = np.zeros(len(values), bool)
    if not hits.any():
        return values, changed
    out = values.to_pylist()
    for i in np.flatnonzero(hits):
        new = change(out[i])
        if new != out[i]:
            out[i] = new
            changed[i] = True
    return pa.array(out, pa.string()), changed


def filtered_columns(columns: dict, keep: np.ndarray) -> dict:
    """The rows of `keep` of a batch's columns (Arrow arrays, numpy arrays or lists)."""
    mask = pa.array(keep)
    return {
        name: value.filter(mask)
        if isinstance(value, pa.Array)
        else (
            value[keep]
            if isinstance(value, np.ndarray)
            else [v for v, k in zip(value, keep, strict=True) if k]
        )
        for name, value in columns.items()
    }


@dataclass(frozen=True)
class SeedGates:
    """The gates' settings (config `seeds.*`); an instance with no arguments applies none."""

    min_chars: dict[str, int] = field(default_factory=dict)
    max_chars: dict[str, int] = field(default_factory=dict)
    repair_text: bool = False
    html_to_text: tuple[str, ...] = ()
    languages: dict[str, list[str]] = field(default_factory=dict)
    language_min_confidence: float = 0.9

    def apply(self, kind: str, columns: dict, counts) -> dict:
        """The batch's columns repaired, less the rows a gate leaves out, all counted in
        `counts` (a source's report: its `repaired`, `gated` and `languages` Counters)."""
        columns = self._repair(kind, columns, counts)
        columns = self._length(kind, columns, counts)
        return self._language(kind, columns, counts)

    def _repair(self, kind: str, columns: dict, counts) -> dict:
        required, optional = KINDS[kind]
        steps = []
        if self.repair_text:
            steps.append(("text_repaired", _NEEDS_REPAIR, _fixer()))
        if kind in self.html_to_text:
            steps.append(("html_to_text", _LOOKS_LIKE_HTML, _html_text))
        if not steps:
            return columns
        columns = dict(columns)
        empty = np.zeros(len(columns["row"]), bool)
        touched = {}
        for reason, pattern, change in steps:
            touched[reason] = np.zeros(len(columns["row"]), bool)
            for name in required + optional:
                if name == "id" or columns.get(name) is None:
                    continue
                columns[name], changed = _rewrite(columns[name], pattern, change)
                touched[reason] |= changed
                if changed.any():
                    blank = pc.equal(pc.utf8_trim_whitespace(columns[name]), "")
                    blank = pc.fill_null(blank, False).to_numpy(zero_copy_only=False)
                    if name in required:
                        empty |= blank & changed
                    elif blank.any():  # an optional field with nothing left is missing
                        columns[name] = pc.if_else(blank, None, columns[name])
        # A row left out is counted once, by the reason it was left out.
        for reason, rows in touched.items():
            if (rows & ~empty).any():
                counts.repaired[reason] += int((rows & ~empty).sum())
        if empty.any():
            # A required field with no text left (only markup, or only control characters).
            counts.gated["empty_after_repair"] += int(empty.sum())
            columns = filtered_columns(columns, ~empty)
        return columns

    def _length(self, kind: str, columns: dict, counts) -> dict:
        low, high = self.min_chars.get(kind), self.max_chars.get(kind)
        if low is None and high is None:
            return columns
        lengths = pc.utf8_length(_strings(columns[MAIN_FIELD[kind]]))
        lengths = lengths.to_numpy(zero_copy_only=False)
        short = lengths < low if low is not None else np.zeros(len(lengths), bool)
        long = lengths > high if high is not None else np.zeros(len(lengths), bool)
        if not (short.any() or long.any()):
            return columns
        for reason, hit in (("too_short", short), ("too_long", long)):
            if hit.any():
                counts.gated[reason] += int(hit.sum())
        return filtered_columns(columns, ~(short | long))

    def _language(self, kind: str, columns: dict, counts) -> dict:
        allowed = self.languages.get(kind)
        if not allowed or not len(columns["row"]):
            return columns
        from resiliparse.parse.lang import detect_fast

        identify = _identifier().classify
        texts = _strings(columns[MAIN_FIELD[kind]])
        texts = pc.utf8_slice_codeunits(texts, 0, LANGUAGE_CHARS).to_pylist()
        other = np.zeros(len(texts), bool)
        for i, text in enumerate(texts):
            if detect_fast(text)[0] in allowed:
                continue
            language, confidence = identify(text)
            if language not in allowed and confidence >= self.language_min_confidence:
                other[i] = True
                counts.languages[language] += 1
        if not other.any():
            return columns
        counts.gated["other_language"] += int(other.sum())
        return filtered_columns(columns, ~other)
