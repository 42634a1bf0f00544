"""What stages agree on, besides the tables (core.tables): the split names, the seed kinds and
their fields, the topic routes, the seed extract that prompts and topic clustering both show,
the length a prompt asks for, and how a split's seeds are cut into shards.

Nothing here imports any other module of the package.
"""

from __future__ import annotations

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


def extract(text: str | None, chars: int) -> str:
    """The first `chars` characters of a seed text, ended at a word boundary when one is near
    (a cut mid-word reads as a typo the model may copy)."""
    text = (text or "").strip()
    if len(text) <= chars:
        return text
    cut = text[:chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:space] if space >= chars * 0.8 else cut).rstrip()


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
