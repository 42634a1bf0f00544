"""What a seed becomes: one prompt per applicable template, and per kind the variants (audiences,
with and without reference text, with the titles that came before it in its book or course).
All randomness derives from (global seed, split, purpose, seed id)."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cosmoforge.core.contracts import (
    extract,
)
from cosmoforge.core.io import (
    derive_seed,
    stable_hash,
)
from cosmoforge.stages.templates import Template

MAX_PREVIOUS_UNITS = 5


def _seed_rng(global_seed: int, split: str, purpose: str, key: str) -> random.Random:
    return random.Random(derive_seed(global_seed, split, purpose, key))


def title_text(value: str | None) -> str:
    """A title as the templates quote it ("{{ title }}"): trimmed, and its own double quotes
    made single, so `How to Be Like Kate Todd from "NCIS"` reads as one quoted title instead of
    three quoted pieces."""
    return (value or "").strip().replace('"', "'")


def _previous_titles(
    seeds: list[dict], group_keys: tuple[str, ...], title_key: str, global_seed: int, split: str
) -> dict[str, list[str]]:
    """For each seed, the titles of earlier seeds in its group (book section, course unit).

    Long histories are subsampled *without* replacement and kept in reading order (Cosmopedia
    drew with replacement, so titles could repeat, and accumulated them across units).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for seed in seeds:
        groups[tuple(seed.get(k) for k in group_keys)].append(seed)
    previous: dict[str, list[str]] = {}
    for members in groups.values():
        for index, seed in enumerate(members):
            earlier = [title_text(m[title_key]) for m in members[:index]]
            if len(earlier) > MAX_PREVIOUS_UNITS:
                rng = _seed_rng(global_seed, split, "previous_units", seed["seed_id"])
                keep = sorted(rng.sample(range(len(earlier)), rng.randint(2, MAX_PREVIOUS_UNITS)))
                earlier = [earlier[i] for i in keep]
            previous[seed["seed_id"]] = earlier
    return previous


def sample_id(split: str, seed: dict, template: Template, variant: str = "") -> str:
    return stable_hash(split, seed["seed_id"], template.name, variant)


def _variants(
    split: str,
    seed: dict,
    template: Template,
    options: dict,
    context: dict,
    base_id: str,
) -> list[tuple[str, dict]]:
    """(variant name, template variables) pairs for one seed and template; `base_id` is the
    sample id of the seed and template without a variant. Every variant also gets the
    length to ask for, `target_words`."""
    return [
        (name, {**variables, "target_words": options["target_words"]})
        for name, variables in _kind_variants(split, seed, template, options, context, base_id)
    ]


def _injected_topic(split: str, seed: dict, template: Template, options: dict, base_id: str) -> str:
    """The web seed's cluster topic if it is put in this prompt (topic_probability), else ''.
    The draw is made only where it can go either way (seeding an RNG costs as much as rendering
    a prompt); where it is made, it is the same draw as always."""
    topic = seed.get("topic") or ""
    probability = options["topic_probability"]
    if not topic or probability <= 0:
        return ""
    if probability >= 1:
        return topic
    rng = _seed_rng(options["seed"], split, template.name, base_id)
    return topic if rng.random() < probability else ""


def _kind_variants(
    split: str, seed: dict, template: Template, options: dict, context: dict, base_id: str
) -> list[tuple[str, dict]]:
    kind = seed["kind"]
    chars = options["extract_chars"]
    if kind == "web":
        topic = _injected_topic(split, seed, template, options, base_id)
        return [("", {"extract": extract(seed["text"], chars), "topic": topic})]
    if kind == "auto_math_text":
        return [("", {"extract": extract(seed["text"], chars)})]
    if kind == "ultrachat":
        return [("", {"extract": extract(seed["question"], chars)})]
    if kind == "openhermes":
        text = seed["instruction"].strip() + "\n" + seed["answer"].strip()
        return [("", {"extract": extract(text, chars)})]
    if kind == "wikihow":
        return [("", {"title": title_text(seed["title"])})]
    if kind == "stanford":
        return [
            (
                "",
                {
                    "course_title": title_text(seed["course_title"]),
                    "course_description": extract(seed.get("course_description"), chars),
                    "section_title": title_text(seed.get("section_title")),
                    "unit_title": title_text(seed["unit_title"]),
                },
            )
        ]
    if kind == "openstax":
        base = {
            "book_title": title_text(seed["book_title"]),
            "chapter_title": title_text(seed["chapter_title"]),
            "section_title": title_text(seed["section_title"]),
            "unit_title": title_text(seed["unit_title"]),
            "previous_units": context["previous"][seed["seed_id"]],
        }
        variants = [("no_reference", {**base, "reference": ""})]
        reference = extract(seed.get("text"), options["openstax_reference_chars"])
        if reference:
            variants.insert(0, ("with_reference", {**base, "reference": reference}))
        return variants
    if kind == "khanacademy":
        return [
            (
                "",
                {
                    "course_title": title_text(seed["course_title"]),
                    "unit_title": title_text(seed["unit_title"]),
                    "lesson_title": title_text(seed["lesson_title"]),
                    # bounded like every kind's long field (an outline can be a whole page)
                    "lesson_outline": extract(seed.get("lesson_outline"), chars),
                    "previous_lessons": context["previous"][seed["seed_id"]],
                },
            )
        ]
    raise ValueError(f"unknown seed kind {kind!r}")


PREVIOUS_GROUPS = {
    # kind -> (group key columns, title column): a seed lists the titles before it in its group
    "openstax": (("source", "book_title", "chapter_title", "section_title"), "unit_title"),
    "khanacademy": (("source", "course_title", "unit_title"), "lesson_title"),
}


def previous_titles(seed_rows: list[dict], global_seed: int, split: str) -> dict[str, list[str]]:
    """Earlier titles in each seed's group, for the kinds that list them (OpenStax units, Khan
    lessons). Needs only the group and title columns of the split."""
    previous: dict[str, list[str]] = {}
    for kind, (group_keys, title_key) in PREVIOUS_GROUPS.items():
        members = [s for s in seed_rows if s["kind"] == kind]
        if members:
            previous.update(_previous_titles(members, group_keys, title_key, global_seed, split))
    return previous


def previous_titles_of_file(seeds_path: str | Path, global_seed: int, split: str) -> dict:
    parquet = pq.ParquetFile(seeds_path)
    names = set(parquet.schema_arrow.names)
    columns = {"seed_id", "kind"}
    for group_keys, title_key in PREVIOUS_GROUPS.values():
        columns.update(c for c in (*group_keys, title_key) if c in names)
    kinds = pq.read_table(seeds_path, columns=["kind"]).column("kind")
    if not pc.any(pc.is_in(kinds, value_set=pa.array(list(PREVIOUS_GROUPS)))).as_py():
        return {}
    table = pq.read_table(seeds_path, columns=sorted(columns))
    return previous_titles(table.to_pylist(), global_seed, split)
