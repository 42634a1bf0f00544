"""The dataset card: README.md of the release, generated from the data and the stage reports."""

from __future__ import annotations

import functools
import json
import shutil
from collections import Counter
from pathlib import Path

import jinja2
import pyarrow.parquet as pq
import yaml

from cosmoforge.core.declare import (
    SHARDS,
    Command,
    json_arg,
    optional_paths,
    path_arg,
    paths_arg,
    per_shard_files,
)
from cosmoforge.core.io import atomic_path, write_json, write_text
from cosmoforge.core.layout import RunPaths
from cosmoforge.core.tokens import TOKENIZER_NAME
from cosmoforge.stages.quality import FLAGS, merge_diversity
from cosmoforge.stages.release import split_totals
from cosmoforge.stages.topics import PLOTS as TOPIC_PLOTS


def _load_json(paths: list[str | Path]) -> list[dict]:
    return [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]


def _bar_plot(counts: dict[str, Counter], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(counts)
    categories = sorted({c for counter in counts.values() for c in counter})
    fig, ax = plt.subplots(figsize=(10, 0.45 * max(len(splits), 4) + 1.5))
    left = [0] * len(splits)
    cmap = plt.get_cmap("tab20")
    for i, category in enumerate(categories):
        values = [counts[s].get(category, 0) for s in splits]
        ax.barh(splits, values, left=left, label=category, color=cmap(i % 20))
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("rows")
    ax.set_title(title)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _length_plot(lengths: dict[str, Counter], path: Path) -> None:
    """Histogram of token_length per split, from the shards' counts of each length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    longest = max((max(c) for c in lengths.values() if c), default=1)
    bins = [longest * i / 20 for i in range(21)]
    for split, counts in lengths.items():
        if counts:
            ax.hist(
                list(counts), bins=bins, weights=list(counts.values()), histtype="step", label=split
            )
    ax.set_xlabel("token_length (Mistral tokens, no BOS)")
    ax.set_ylabel("rows")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def build_card(
    release_stats: list[str | Path],
    seed_reports: list[str | Path],
    generation_stats: list[str | Path],
    settings: dict,
    out_readme: str | Path,
    out_stats: str | Path,
    dedup_report: str | Path | None = None,
    contamination: str | Path | None = None,
    benchmarks: str | Path | None = None,
    topics_report: str | Path | None = None,
    ledger: str | Path | None = None,
) -> dict:
    """The card (README.md, rendered from card.md.j2), its plots and stats.json, from the stage
    reports and the release shards' statistics: no released text is read, so the card costs
    the same at any scale. Each section's figures come from one function below; the template
    holds all of the prose."""
    out_readme = Path(out_readme)
    plots = out_readme.parent / "plots"
    shard_stats: dict[str, list[dict]] = {}
    for stats_file in _load_json(release_stats):
        shard_stats.setdefault(stats_file["split"], []).append(stats_file)
    gen = _load_json(generation_stats)
    topics = _read_optional(topics_report)
    sections = {
        "rows": rows_section(shard_stats),
        "fates": ledger_fates(ledger) if ledger else None,
        "quality": quality_section(shard_stats),
        "diversity": merge_diversity(
            [s.get("diversity", {}) for shards in shard_stats.values() for s in shards]
        ),
        "variants": variant_section(shard_stats),
        "distributions": distributions_section(shard_stats),
        "seeds": seeds_section(_load_json(seed_reports)),
        "generation": generation_section(gen),
        "topics": topics_section(topics),
        "dedup": dedup_section(_read_optional(dedup_report)),
        "contamination": contamination_section(
            _read_optional(contamination), _read_optional(benchmarks)
        ),
    }
    for column, counts in sections["distributions"].items():
        _bar_plot(counts, f"{column} per split", plots / f"{column}.png")
    _length_plot(token_lengths(shard_stats), plots / "token_length.png")
    if topics:  # the topic plots travel with the card
        for plot in TOPIC_PLOTS:
            with atomic_path(plots / f"{plot}.png") as tmp:
                shutil.copyfile(Path(topics_report).parent / f"{plot}.png", tmp)
    stats = card_stats(sections)
    write_json(out_stats, stats)
    write_text(out_readme, render_card(sections, settings))
    return stats


def _read_optional(path: str | Path | None) -> dict | None:
    return json.loads(Path(path).read_text(encoding="utf-8")) if path else None


# --- sections: the figures of each part of the card -------------------------------------------


def rows_section(shard_stats: dict[str, list[dict]]) -> dict:
    """Files, rows, tokens and what was left out, per split; the model revisions seen."""
    per_split = {}
    revisions: set[str] = set()
    for split, shards in shard_stats.items():
        totals = split_totals(shards)
        per_split[split] = {
            key: totals[key]
            for key in ("rows", "tokens", "files", "generated", "left_out", "truncated_kept")
        }
        revisions.update(r for shard in shards for r in shard["model_revisions"])
    first = next(iter(shard_stats.values()), [{}])[0]
    return {
        "per_split": per_split,
        "rows": sum(s["rows"] for s in per_split.values()),
        "tokens": sum(s["tokens"] for s in per_split.values()),
        "min_token_length": first.get("min_token_length", "?"),
        "revision": ", ".join(sorted(revisions)) or "n/a",
    }


def token_lengths(shard_stats: dict[str, list[dict]]) -> dict[str, Counter]:
    lengths = {}
    for split, shards in shard_stats.items():
        lengths[split] = Counter()
        for shard in shards:
            lengths[split].update({int(n): c for n, c in shard["token_length_counts"].items()})
    return lengths


def distributions_section(shard_stats: dict[str, list[dict]]) -> dict[str, dict[str, Counter]]:
    """Rows per value of seed_data, format and audience, per split."""
    dists: dict[str, dict[str, Counter]] = {"seed_data": {}, "format": {}, "audience": {}}
    for column, per_split in dists.items():
        for split, shards in shard_stats.items():
            per_split[split] = Counter()
            for shard in shards:
                per_split[split].update(shard["distributions"][column])
    return dists


def quality_section(shard_stats: dict[str, list[dict]]) -> dict:
    """Rows and quality flags per template, summed over the shards; the flags that drop."""
    totals: dict[str, Counter] = {}
    drop: set[str] = set()
    for shards in shard_stats.values():
        for shard in shards:
            drop.update(shard.get("quality_drop", []))
            for template, counts in shard.get("flags_by_template", {}).items():
                totals.setdefault(template, Counter()).update(counts)
    by_template = {
        t: {"rows": c["rows"], **{f: c[f] for f in FLAGS}} for t, c in sorted(totals.items())
    }
    return {"by_template": by_template, "drop": sorted(drop)}


def variant_section(shard_stats: dict[str, list[dict]]) -> dict[str, dict]:
    """Pairwise similarity of the texts of one seed's prompts, per split."""
    out = {}
    for split, shards in shard_stats.items():
        figures = [s["variant_similarity"] for s in shards if s.get("variant_similarity")]
        pairs = sum(f["pairs"] for f in figures)
        if pairs:
            out[split] = {
                "pairs": pairs,
                "mean_jaccard": sum(f["mean_jaccard"] * f["pairs"] for f in figures if f["pairs"])
                / pairs,
                "pairs_above_0_5": sum(f["pairs_above_0_5"] for f in figures),
            }
    return out


def seeds_section(seed_reports: list[dict]) -> dict[str, dict]:
    return {
        r["split"]: {
            "seeds": r["seeds"],
            "rows_read": sum(src["rows_read"] for src in r["sources"]),
            "rows_skipped": sum(src["rows_skipped"] for src in r["sources"]),
        }
        for r in seed_reports
    }


def generation_section(gen: list[dict]) -> dict:
    completion_tokens = sum(g["completion_tokens"] for g in gen)
    generate_s = sum(g["generate_s"] for g in gen)
    return {
        "shards": len(gen),
        "completion_tokens": completion_tokens,
        "generate_s": round(generate_s, 2),
        "engine_start_s": round(sum(g["engine_start_s"] for g in gen), 2),
        "completion_tokens_per_s": round(completion_tokens / generate_s, 2) if generate_s else None,
        "resumed_rows": sum(g["resumed_rows"] for g in gen),
        # GPU-hours the generation jobs held (wall time x GPUs, start-up included; the last
        # attempt of each shard).
        "gpu_hours": round(sum(g.get("gpu_hours", 0) for g in gen), 4),
        **_prefix_cache(gen),
    }


def topics_section(topics: dict | None) -> dict | None:
    if not topics:
        return None
    return {**topics, "cluster_count": len(topics["clusters"])}


def dedup_section(dedup: dict | None) -> dict | None:
    if not dedup:
        return None
    p = dedup["parameters"]
    # The Jaccard similarity at which a pair has even odds of sharing a bucket.
    return {**dedup, "lsh_threshold": (1 / p["num_buckets"]) ** (1 / p["hashes_per_bucket"])}


def contamination_section(contam: dict | None, bench: dict | None) -> dict | None:
    if not contam:
        return None
    columns = sorted({b for cells in contam["table"].values() for b in cells})
    return {**contam, "columns": columns, "benchmark_texts": bench}


def card_stats(sections: dict) -> dict:
    """stats.json: the card's figures for programs."""
    rows = sections["rows"]
    stats = {
        "diversity": sections["diversity"],
        "fates": sections["fates"],
        "quality": sections["quality"]["by_template"],
        "splits": rows["per_split"],
        "rows": rows["rows"],
        "tokens": rows["tokens"],
        "filtered": {s: v["left_out"] for s, v in rows["per_split"].items()},
        "seed_rows_skipped": {s: v["rows_skipped"] for s, v in sections["seeds"].items()},
        "generation": sections["generation"],
    }
    if sections["dedup"]:
        stats["dedup"] = {k: sections["dedup"][k] for k in ("removed", "documents")}
    if sections["contamination"]:
        stats["contaminated"] = sections["contamination"]["contaminated"]
    if sections["topics"]:
        topics = sections["topics"]
        stats["topics"] = {
            "clusters": topics["cluster_count"],
            "kept_clusters": topics["kept_clusters"],
            "seeds_per_split": topics["seeds_per_split"],
        }
    return stats


# --- rendering ---------------------------------------------------------------------------------


def _markdown_cell(value, limit: int | None = None) -> str:
    text = str(value)[:limit] if limit else str(value)
    return text.replace("|", "/").replace("\n", " ")


@functools.cache
def _card_template():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        pct=lambda x: f"{x:.1%}",
        json=lambda x: json.dumps(x, sort_keys=True),
        cell=_markdown_cell,
        counts=lambda d: ", ".join(f"{k}: {n}" for k, n in d.items()),
        yaml=lambda d: yaml.safe_dump(d, sort_keys=False).strip(),
    )
    return env.get_template("card.md.j2")


def render_card(sections: dict, settings: dict) -> str:
    """The card's markdown: card.md.j2 over the sections' figures and the run's settings."""
    header = {
        "pretty_name": "cosmoforge synthetic dataset",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "configs": [
            {"config_name": split, "data_files": [{"split": "train", "path": f"{split}/*.parquet"}]}
            for split in sections["rows"]["per_split"]
        ],
    }
    text = _card_template().render(
        header=header,
        settings=settings,
        model=settings["model"],
        run_name=settings.get("run_name", ""),
        tokenizer=TOKENIZER_NAME,
        flags=FLAGS,
        topic_plots=TOPIC_PLOTS,
        **sections,
    )
    return text.rstrip() + "\n"


def _prefix_cache(gen: list[dict]) -> dict:
    """Prompt tokens served from vLLM's prefix cache, over the shards that recorded it."""
    recorded = [g for g in gen if g.get("prefix_cache_queries")]
    queries = sum(g["prefix_cache_queries"] for g in recorded)
    hits = sum(g["prefix_cache_hits"] for g in recorded)
    return {
        "prefix_cache_queries": queries,
        "prefix_cache_hits": hits,
        "prefix_cache_hit_rate": round(hits / queries, 4) if queries else None,
    }


def ledger_fates(path: str | Path) -> dict[str, dict[str, int]]:
    """Prompts per split and fate, from the ledger's two columns."""
    table = pq.read_table(path, columns=["split", "fate"])
    counts = table.group_by(["split", "fate"]).aggregate([("fate", "count")]).to_pylist()
    fates: dict[str, dict[str, int]] = {}
    for row in sorted(counts, key=lambda r: (r["split"], r["fate"])):
        fates.setdefault(row["split"], {})[row["fate"]] = row["fate_count"]
    return fates


# --- command line ------------------------------------------------------------------------------


def _card_command(args) -> None:
    release_stats = per_shard_files(args, "release_stats", RunPaths.release_stats)
    generation_stats = per_shard_files(args, "generation_stats", RunPaths.generation_stats)
    build_card(
        release_stats,
        args.seed_reports,
        generation_stats,
        args.settings,
        args.out,
        args.stats,
        dedup_report=args.dedup_report,
        contamination=args.contamination,
        benchmarks=args.benchmarks,
        topics_report=args.topics_report,
        ledger=args.ledger,
    )


COMMANDS = (
    Command(
        "card",
        "write the dataset card, statistics and plots",
        _card_command,
        {
            **SHARDS,
            "--release-stats": optional_paths("each shard's statistics"),
            "--seed-reports": paths_arg("every split's seed report"),
            "--generation-stats": optional_paths("each shard's generation statistics"),
            "--settings": {
                "required": True,
                "type": json_arg,
                "help": 'JSON: {"run_name", "model", "engine", "sampling": {split: ...}}',
            },
            "--dedup-report": {"type": Path},
            "--contamination": {"type": Path},
            "--benchmarks": {"type": Path},
            "--topics-report": {"type": Path, "help": "topics/report/report.json"},
            "--ledger": {"type": Path, "help": "ledger.parquet: the fate of every prompt"},
            "--out": path_arg("the card (README.md)"),
            "--stats": path_arg("the card's figures (stats.json)"),
        },
    ),
)
