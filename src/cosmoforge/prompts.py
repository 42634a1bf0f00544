"""Build the prompt table of a split: every seed x every template (x variants), sharded.

Order matters for the GPU: a seed's prompts are adjacent and every template opens with the seed
material, so vLLM's prefix cache computes a shared extract once per seed. Shards are contiguous
blocks of seeds, so all variants of a seed land in the same shard.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import TopicError
from .io import atomic_path, derive_seed, stable_hash
from .templates import Template

PROMPT_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("split", pa.string()),
        ("shard", pa.int32()),
        ("seed_id", pa.string()),
        ("seed_data", pa.string()),
        ("format", pa.string()),
        ("audience", pa.string()),
        ("template_id", pa.string()),
        ("template_version", pa.int32()),
        ("variant", pa.string()),
        ("topic", pa.string()),
        ("topic_injected", pa.bool_()),
        ("topic_cluster", pa.int32()),
        ("prompt", pa.string()),
    ]
)

MAX_PREVIOUS_UNITS = 5
# Topic routes of web seeds: the web templates of one format, or "all" of them.
ROUTES = ("textbook", "blogpost", "wikihow")
ALL_ROUTES = "all"


def extract(text: str | None, chars: int) -> str:
    return (text or "").strip()[:chars]


def _seed_rng(global_seed: int, split: str, purpose: str, key: str) -> random.Random:
    return random.Random(derive_seed(global_seed, split, purpose, key))


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
            earlier = [m[title_key] for m in members[:index]]
            if len(earlier) > MAX_PREVIOUS_UNITS:
                rng = _seed_rng(global_seed, split, "previous_units", seed["seed_id"])
                keep = sorted(rng.sample(range(len(earlier)), rng.randint(2, MAX_PREVIOUS_UNITS)))
                earlier = [earlier[i] for i in keep]
            previous[seed["seed_id"]] = earlier
    return previous


def _variants(
    split: str,
    seed: dict,
    template: Template,
    options: dict,
    context: dict,
) -> list[tuple[str, dict]]:
    """(variant name, template variables) pairs for one seed and template."""
    kind = seed["kind"]
    chars = options["extract_chars"]
    if kind == "web":
        sample_key = stable_hash(split, seed["seed_id"], template.name, "")
        rng = _seed_rng(options["seed"], split, template.name, sample_key)
        topic = seed.get("topic") or ""
        inject = bool(topic) and rng.random() < options["topic_probability"]
        return [("", {"extract": extract(seed["text"], chars), "topic": topic if inject else ""})]
    if kind == "auto_math_text":
        return [("", {"extract": extract(seed["text"], chars)})]
    if kind == "ultrachat":
        return [("", {"extract": extract(seed["question"], chars)})]
    if kind == "openhermes":
        text = seed["instruction"].strip() + "\n" + seed["answer"].strip()
        return [("", {"extract": extract(text, chars)})]
    if kind == "wikihow":
        return [("", {"title": seed["title"].strip()})]
    if kind == "stanford":
        return [
            (
                "",
                {
                    "course_title": seed["course_title"].strip(),
                    "course_description": extract(seed.get("course_description"), chars),
                    "section_title": (seed.get("section_title") or "").strip(),
                    "unit_title": seed["unit_title"].strip(),
                },
            )
        ]
    if kind == "openstax":
        base = {
            "book_title": seed["book_title"].strip(),
            "chapter_title": seed["chapter_title"].strip(),
            "section_title": seed["section_title"].strip(),
            "unit_title": seed["unit_title"].strip(),
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
                    "course_title": seed["course_title"].strip(),
                    "unit_title": seed["unit_title"].strip(),
                    "lesson_title": seed["lesson_title"].strip(),
                    "lesson_outline": (seed.get("lesson_outline") or "").strip(),
                    "previous_lessons": context["previous"][seed["seed_id"]],
                },
            )
        ]
    raise ValueError(f"unknown seed kind {kind!r}")


def build_prompt_rows(
    split: str,
    seeds: pa.Table,
    templates: list[Template],
    *,
    seed: int,
    shards: int,
    extract_chars: int = 1000,
    topic_probability: float = 1.0,
    openstax_reference_chars: int = 600,
    seed_topics: dict[str, dict] | None = None,
    counts: Counter | None = None,
) -> list[dict]:
    """Every seed x applicable template (x variants), in seed order, with shard numbers.

    `seed_topics` (from topic clustering: seed id -> cluster, topic, decision, route) makes web
    seeds take their topic from their cluster, drops the seeds of dropped clusters, and keeps
    only the templates whose format is the cluster's route. `counts` receives why seeds left.
    """
    counts = counts if counts is not None else Counter()
    seed_rows = _apply_topics(seeds.to_pylist(), seed_topics, templates, counts)
    options = {
        "seed": seed,
        "extract_chars": extract_chars,
        "topic_probability": topic_probability,
        "openstax_reference_chars": openstax_reference_chars,
    }
    context = {"previous": {}}
    kinds = {s["kind"] for s in seed_rows}
    if "openstax" in kinds:
        context["previous"].update(
            _previous_titles(
                [s for s in seed_rows if s["kind"] == "openstax"],
                ("source", "book_title", "chapter_title", "section_title"),
                "unit_title",
                seed,
                split,
            )
        )
    if "khanacademy" in kinds:
        context["previous"].update(
            _previous_titles(
                [s for s in seed_rows if s["kind"] == "khanacademy"],
                ("source", "course_title", "unit_title"),
                "lesson_title",
                seed,
                split,
            )
        )
    n = len(seed_rows)
    rows = []
    for index, seed_row in enumerate(seed_rows):
        shard = index * shards // n if n else 0
        for template in templates:
            if seed_row["kind"] not in template.kinds:
                continue
            if not _on_route(seed_row, template):
                continue
            for variant, variables in _variants(split, seed_row, template, options, context):
                sample_id = stable_hash(split, seed_row["seed_id"], template.name, variant)
                topic = variables.get("topic")
                rows.append(
                    {
                        "sample_id": sample_id,
                        "split": split,
                        "shard": shard,
                        "seed_id": seed_row["seed_id"],
                        "seed_data": seed_row["source"],
                        "format": template.format,
                        "audience": template.audience,
                        "template_id": template.template_id,
                        "template_version": template.version,
                        "variant": variant,
                        "topic": seed_row.get("topic") if seed_row["kind"] == "web" else None,
                        "topic_injected": bool(topic),
                        "topic_cluster": seed_row.get("topic_cluster"),
                        "prompt": template.render(**variables),
                    }
                )
    return rows


def _apply_topics(
    seed_rows: list[dict],
    seed_topics: dict[str, dict] | None,
    templates: list[Template],
    counts: Counter,
) -> list[dict]:
    if seed_topics is None:
        return seed_rows
    formats = {t.format for t in templates if "web" in t.kinds}
    kept = []
    for row in seed_rows:
        if row["kind"] != "web":
            kept.append(row)
            continue
        info = seed_topics.get(row["seed_id"])
        if info is None:
            raise TopicError(
                f"web seed {row['seed_id']!r} has no topic cluster; "
                "the topic assignments are out of date (rerun the topics stages)"
            )
        if info["decision"] != "keep":
            counts["dropped_with_topic_cluster"] += 1
            continue
        route = info["route"]
        if route != ALL_ROUTES and route not in formats:
            counts[f"no_template_for_route_{route}"] += 1
            continue
        kept.append(
            {**row, "topic": info["topic"], "topic_cluster": info["cluster"], "route": route}
        )
    return kept


def _on_route(seed_row: dict, template: Template) -> bool:
    route = seed_row.get("route")
    return route is None or route == ALL_ROUTES or template.format == route


def write_prompts(rows: list[dict], shards: int, path: str | Path) -> None:
    """One parquet per split, rows in shard order with one row group per shard, so a shard's
    generation job reads only its own row group (filter pushdown on the shard column)."""
    with (
        atomic_path(path) as tmp,
        pq.ParquetWriter(tmp, PROMPT_SCHEMA, compression="zstd") as writer,
    ):
        for shard in range(shards):
            table = pa.Table.from_pylist(
                [r for r in rows if r["shard"] == shard], schema=PROMPT_SCHEMA
            )
            writer.write_table(table, row_group_size=max(table.num_rows, 1))


def read_prompt_shard(path: str | Path, shard: int) -> pa.Table:
    return pq.read_table(path, filters=[("shard", "==", shard)], schema=PROMPT_SCHEMA)
