"""What stages agree on, besides the tables (core.tables): the split names, the seed kinds and
their fields, the topic routes, the seed extract that prompts and topic clustering both show,
the length a prompt asks for, and how a split's seeds are cut into shards.

Nothing here imports any other module of the package.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

# The eight splits of Cosmopedia, in the order of its release.
SPLITS = (
    "web_samples_v1",
    "web_samples_v2",
    "stanford",
    "stories",
    "wikihow",
    "openstax",
    "khanacademy",
    "auto_math_text",
)

# kind -> (required fields, optional fields). All values are strings.
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "web": (("text",), ("id", "topic", "url")),
    "auto_math_text": (("text",), ("id", "url")),
    "stanford": (("course_title", "unit_title"), ("id", "course_description", "section_title")),
    "ultrachat": (("question",), ("id",)),
    "openhermes": (("instruction", "answer"), ("id",)),
    "wikihow": (("title",), ("id",)),
    "openstax": (
        ("book_title", "chapter_title", "section_title", "unit_title"),
        ("id", "text"),
    ),
    "khanacademy": (("course_title", "unit_title", "lesson_title"), ("id", "lesson_outline")),
}

# The field of each kind that the length gates (seeds.min_chars, seeds.max_chars) measure: the
# text a prompt is built around.
MAIN_FIELD = {
    "web": "text",
    "auto_math_text": "text",
    "stanford": "unit_title",
    "ultrachat": "question",
    "openhermes": "instruction",
    "wikihow": "title",
    "openstax": "unit_title",
    "khanacademy": "lesson_title",
}

# Topic routes of web seeds: the web templates of one format, or "all" of them.
ROUTES = ("textbook", "blogpost", "wikihow")
ALL_ROUTES = "all"


def clip(text: str | None, chars: int) -> str:
    """The first `chars` characters of a text, ended at a word boundary when one is in the last
    fifth (a cut mid-word reads as a typo). What the topic stage embeds and shows its labeller:
    a model's input, not a reader's."""
    text = (text or "").strip()
    if len(text) <= chars:
        return text
    cut = text[:chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:space] if space >= chars * 0.8 else cut).rstrip()


# The end of a sentence: ., !, ? or an ellipsis, with any closing quotes and brackets, before
# white space; or a blank line (a paragraph that ends without a full stop, a heading).
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*(?=\s)|\n[ \t]*\n")
# Where a cut must not fall: inside a tag (<a href=...>), an entity (&amp;) or an escape (\u00e9,
# \n written out), each matched from its start to the cut.
_OPEN_AT_END = re.compile(
    r"<[A-Za-z/!][^<>]*$|&(#[0-9]{0,7}|#[xX][0-9a-fA-F]{0,6}|[A-Za-z][A-Za-z0-9]{0,9})$"
    r"|\\(u[0-9a-fA-F]{0,3}|x[0-9a-fA-F]?|[A-Za-z]?)$"
)
# How far back from `chars` a sentence end may be, and a word boundary (shares of `chars`).
SENTENCE_WINDOW = 0.6
WORD_WINDOW = 0.8
# How far back from the cut an open tag, entity or escape is looked for (a tag with a long URL).
OPEN_LOOKBACK = 400


# A seed's extract is asked for once per template (4 web templates), with the same text object:
# the cache makes that one cut. Its key hashes the text, which Python caches on the object.
@functools.lru_cache(maxsize=256)
def extract(text: str | None, chars: int) -> str:
    """What a prompt quotes of a seed text: all of it when it fits in `chars`; otherwise cut at
    the last sentence end in the final 40% of `chars`, else at the last word boundary in the
    final 20%, else at `chars`. The cut never falls inside a tag, an entity or an escape (it
    moves to before it), so the model is never shown half of `&amp;` or `<em`."""
    text = (text or "").strip()
    if len(text) <= chars:
        return text
    # only the window where a cut may fall is searched (one more: a sentence may end at `chars`)
    ends = [m.end() for m in _SENTENCE_END.finditer(text, int(chars * SENTENCE_WINDOW), chars + 1)]
    ends = [end for end in ends if end <= chars]
    if ends:
        cut = ends[-1]
    else:
        head = text[:chars]
        space = max(head.rfind(" "), head.rfind("\n"))
        cut = space if space >= chars * WORD_WINDOW else chars
    # a tag, entity or escape left open at the cut starts within the last few hundred characters
    open_at_end = _OPEN_AT_END.search(text, max(0, cut - OPEN_LOOKBACK), cut)
    if open_at_end:
        cut = open_at_end.start()
    return text[:cut].rstrip()


def target_words(max_tokens: int) -> int:
    """Length to ask for: ~60% of the token budget in words (a word is ~1.3 tokens), so a text
    can end on its own before max_tokens cuts it; a 192-token demo asks for ~110 words, the
    preset's 2,500 tokens for ~1,500."""
    return max(40, int(max_tokens * 0.6) // 10 * 10)


DEFAULT_TARGET_WORDS = target_words(2500)


def shard_bounds(seeds: int, shards: int) -> list[int]:
    """Seed index where each shard starts, and the end: shard k holds seeds i with
    i * shards // seeds == k (contiguous blocks of nearly equal size)."""
    return [-(-k * seeds // shards) for k in range(shards)] + [seeds]


def is_local_dataset(name: str) -> bool:
    """Whether a `dataset` value names a folder here rather than a hub id: an absolute or
    ./-relative path, or one that exists. (`org/name` that is not a folder here is a hub id.)"""
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()
