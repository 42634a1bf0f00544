"""Build the prompt table of a split: every seed x every template (x variants), sharded.

Order matters for the GPU: a seed's prompts are adjacent and every template opens with the seed
material, so vLLM's prefix cache computes a shared extract once per seed. Shards are contiguous
blocks of seeds (by position in the seed file), so all variants of a seed land in the same shard
and a shard's prompts depend only on its own seeds. The seed file is streamed in batches, one
prompt file per shard, so memory is bounded by a batch, not by the split.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cosmoforge.core.contracts import (
    ALL_ROUTES,
    DEFAULT_TARGET_WORDS,
    shard_bounds,
)
from cosmoforge.core.declare import SPLIT, Command, path_arg
from cosmoforge.core.errors import ConfigError, TemplateError
from cosmoforge.core.io import (
    atomic_path,
    write_json,
)
from cosmoforge.core.settings import PromptSettings
from cosmoforge.core.tables import (
    PROMPT_SCHEMA,
    count_rows,
    iter_seed_rows,
)
from cosmoforge.stages.prompts.routing import TopicCursor
from cosmoforge.stages.prompts.variants import (
    _variants,
    previous_titles,
    previous_titles_of_file,
    sample_id,
)
from cosmoforge.stages.templates import Template


class PromptBuilder:
    """Turns seed rows into prompt rows; one per split, every template compiled once."""

    def __init__(
        self,
        split: str,
        templates: list[Template],
        *,
        seed: int,
        extract_chars: int = 1000,
        topic_probability: float = 1.0,
        openstax_reference_chars: int = 600,
        target_words: int = DEFAULT_TARGET_WORDS,
        topics: TopicCursor | None = None,
        previous: dict[str, list[str]] | None = None,
    ):
        self.split = split
        self.templates = templates
        self.options = {
            "seed": seed,
            "extract_chars": extract_chars,
            "topic_probability": topic_probability,
            "openstax_reference_chars": openstax_reference_chars,
            "target_words": target_words,
        }
        self.topics = topics
        self.context = {"previous": previous or {}}
        self.web_formats = {t.format for t in templates if "web" in t.kinds}
        self.counts: Counter = Counter()

    def rows(self, seed_rows: list[dict], shard: int) -> list[dict]:
        """The prompts of consecutive seed rows, a seed's variants adjacent, in seed order."""
        if self.topics is not None:
            web = [r["seed_id"] for r in seed_rows if r["kind"] == "web"]
            infos = iter(self.topics.take(web))
            seed_rows = [
                r
                for r in (
                    self._with_topic(r, next(infos)) if r["kind"] == "web" else r for r in seed_rows
                )
                if r is not None
            ]
        split = self.split
        rows = []
        for seed_row in seed_rows:
            for template in self.templates:
                if seed_row["kind"] not in template.kinds or not _on_route(seed_row, template):
                    continue
                base_id = sample_id(split, seed_row, template)
                for variant, variables in _variants(
                    split, seed_row, template, self.options, self.context, base_id
                ):
                    rows.append(
                        {
                            "sample_id": sample_id(split, seed_row, template, variant)
                            if variant
                            else base_id,
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
                            "topic_injected": bool(variables.get("topic")),
                            "topic_cluster": seed_row.get("topic_cluster"),
                            "prompt": template.render(**variables),
                        }
                    )
        return rows

    def _with_topic(self, row: dict, info: dict) -> dict | None:
        if info["decision"] != "keep":
            self.counts["dropped_with_topic_cluster"] += 1
            return None
        route = info["route"]
        if route != ALL_ROUTES and route not in self.web_formats:
            self.counts[f"no_template_for_route_{route}"] += 1
            return None
        return {**row, "topic": info["topic"], "topic_cluster": info["cluster"], "route": route}


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
    target_words: int = DEFAULT_TARGET_WORDS,
    topic_assignments: list[str | Path] | None = None,
    topic_decisions: str | Path | None = None,
    counts: Counter | None = None,
) -> list[dict]:
    """Every seed x applicable template (x variants), in memory: for tests and small tools.
    `write_split_prompts` is the same, streamed to shard files."""
    seed_rows = seeds.to_pylist()
    topics = TopicCursor(topic_assignments, topic_decisions) if topic_decisions else None
    builder = PromptBuilder(
        split,
        templates,
        seed=seed,
        extract_chars=extract_chars,
        topic_probability=topic_probability,
        openstax_reference_chars=openstax_reference_chars,
        target_words=target_words,
        topics=topics,
        previous=previous_titles(seed_rows, seed, split),
    )
    rows = []
    bounds = shard_bounds(len(seed_rows), shards)
    for shard in range(shards):
        rows += builder.rows(seed_rows[bounds[shard] : bounds[shard + 1]], shard)
    if topics is not None:
        topics.finish()
    if counts is not None:
        counts.update(builder.counts)
    return rows


PROMPT_BATCH = 4096


def prompt_shard_path(out_dir: str | Path, shard: int) -> Path:
    return Path(out_dir) / f"{shard:05d}.parquet"


def write_split_prompts(
    split: str,
    seeds_path: str | Path,
    templates: list[Template],
    shards: int,
    out_dir: str | Path,
    *,
    seed: int,
    extract_chars: int = 1000,
    topic_probability: float = 1.0,
    openstax_reference_chars: int = 600,
    target_words: int = DEFAULT_TARGET_WORDS,
    topic_assignments: list[str | Path] | None = None,
    topic_decisions: str | Path | None = None,
) -> dict:
    """Stream a split's seed file into one prompt file per shard, `<out_dir>/<shard>.parquet`
    with its `.report.json` (each written atomically). Memory is bounded by a batch of seeds;
    a shard's file depends only on its own block of seeds. Returns the split's report."""

    n = _check_split(split, seeds_path, templates, shards)
    topics = TopicCursor(topic_assignments, topic_decisions) if topic_decisions else None
    builder = PromptBuilder(
        split,
        templates,
        seed=seed,
        extract_chars=extract_chars,
        topic_probability=topic_probability,
        openstax_reference_chars=openstax_reference_chars,
        target_words=target_words,
        topics=topics,
        previous=previous_titles_of_file(seeds_path, seed, split),
    )
    bounds = shard_bounds(n, shards)
    reports = [
        _write_shard(builder, split, shard, seeds_path, bounds, prompt_shard_path(out_dir, shard))
        for shard in range(shards)
    ]
    if topics is not None:
        topics.finish()
    return {"split": split, **merge_prompt_reports(reports)}


def _check_split(split: str, seeds_path, templates: list[Template], shards: int) -> int:
    """The split's seed count, once it is known that every shard gets seeds and some template
    applies to them; refused before anything is written."""
    n = count_rows(seeds_path)
    if 0 < n < shards:
        # An empty shard is a GPU job (queue wait, engine start) for nothing, and an empty
        # release file beside the others.
        raise ConfigError(
            f"splits.{split}.shards: {shards} shards for {n} seed(s) in {seeds_path} would "
            f"leave {shards - n} shard(s) empty; set splits.{split}.shards to at most {n}"
        )
    kinds = pq.read_table(seeds_path, columns=["kind"]).column("kind")
    applicable = pa.array(sorted({k for t in templates for k in t.kinds}), pa.string())
    if n and not pc.any(pc.is_in(kinds, value_set=applicable)).as_py():
        raise TemplateError(
            f"split '{split}': no template in {Path(templates[0].path).parent} applies to the "
            f"seed kinds of this split ({sorted(set(kinds.to_pylist()))})"
        )
    return n


def _write_shard(builder, split: str, shard: int, seeds_path, bounds: list[int], path: Path):
    """One shard's prompt file from its block of seeds, and its report (both atomic)."""
    per_template: Counter = Counter()
    left_before = Counter(builder.counts)
    injected = written = 0
    with (
        atomic_path(path) as tmp,
        pq.ParquetWriter(tmp, PROMPT_SCHEMA, compression="zstd") as writer,
    ):
        seeds = iter_seed_rows(seeds_path, bounds[shard], bounds[shard + 1])
        for batch in _rebatch(seeds, PROMPT_BATCH):
            rows = builder.rows(batch, shard)
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA))
            per_template.update(r["template_id"] for r in rows)
            injected += sum(r["topic_injected"] for r in rows)
            written += len(rows)
    report = {
        "split": split,
        "shard": shard,
        "seeds": bounds[shard + 1] - bounds[shard],
        "prompts": written,
        "per_template": dict(sorted(per_template.items())),
        "topic_injected": injected,
        "seeds_left_out": dict(sorted((builder.counts - left_before).items())),
    }
    write_json(path.with_suffix(".report.json"), report)
    return report


def merge_prompt_reports(reports: list[dict]) -> dict:
    """A split's prompt figures from its shards' reports."""
    per_template: Counter = Counter()
    left_out: Counter = Counter()
    for r in reports:
        per_template.update(r["per_template"])
        left_out.update(r["seeds_left_out"])
    return {
        "seeds": sum(r["seeds"] for r in reports),
        "prompts": sum(r["prompts"] for r in reports),
        "per_template": dict(sorted(per_template.items())),
        "per_shard": {str(r["shard"]): r["prompts"] for r in reports},
        "topic_injected": sum(r["topic_injected"] for r in reports),
        "seeds_left_out": dict(sorted(left_out.items())),
    }


def _rebatch(batches, size: int):
    """Seed rows as lists of at most `size` dicts."""
    for batch in batches:
        rows = batch.to_pylist()
        for start in range(0, len(rows), size):
            yield rows[start : start + size]


def _on_route(seed_row: dict, template: Template) -> bool:
    route = seed_row.get("route")
    return route is None or route == ALL_ROUTES or template.format == route


def prompts_stage(
    split: str,
    seeds_path: str | Path,
    settings: PromptSettings | dict,
    prompts_dir: str | Path,
    out_dir: str | Path,
    report_path: str | Path,
    topic_assignments: list[str | Path] | None = None,
    topic_decisions: str | Path | None = None,
) -> dict:
    """The `prompts` stage as the workflow runs it: the split's templates loaded from
    `prompts_dir`, one prompt file per shard, the merged report."""
    from cosmoforge.core.io import write_json
    from cosmoforge.stages.templates import load_templates

    settings = PromptSettings.of(settings)
    templates = load_templates(prompts_dir, split, settings.templates)
    report = write_split_prompts(
        split,
        seeds_path,
        templates,
        settings.shards,
        out_dir,
        seed=settings.seed,
        extract_chars=settings.extract_chars,
        target_words=settings.target_words,
        topic_probability=settings.topic_probability,
        topic_assignments=topic_assignments,
        topic_decisions=topic_decisions,
    )
    write_json(report_path, report)
    return report


# --- command line ------------------------------------------------------------------------------


def _prompts_command(args) -> None:
    prompts_stage(
        args.split,
        args.seeds,
        args.settings,
        args.prompts_dir,
        args.out_dir,
        args.report,
        topic_assignments=args.topic_assignments,
        topic_decisions=args.topic_decisions,
    )


COMMANDS = (
    Command(
        "prompts",
        "render a split's prompts, one file per shard",
        _prompts_command,
        {
            "--split": SPLIT,
            "--seeds": path_arg("the split's seed parquet"),
            "--prompts-dir": path_arg("the template folder"),
            "--topic-assignments": {"nargs": "+", "type": Path, "help": "web splits: clusters"},
            "--topic-decisions": {"type": Path, "help": "web splits: the decisions file"},
            "--settings": PromptSettings.argument(),
            "--out-dir": path_arg("<shard>.parquet and .report.json go here"),
            "--report": path_arg("the split's report (JSON)"),
        },
    ),
)
