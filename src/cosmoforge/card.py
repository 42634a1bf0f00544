"""The dataset card: README.md of the release, generated from the data and the stage reports."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from .io import atomic_path, write_json, write_text
from .quality import FLAGS, merge_diversity
from .release import split_totals
from .tokens import TOKENIZER_NAME
from .topics import PLOTS as TOPIC_PLOTS


def _load_json(paths: list[str | Path]) -> list[dict]:
    return [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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
    """The card and stats.json from the stage reports and the release shards' statistics:
    no released text is read, so the card costs the same at any scale."""
    out_readme = Path(out_readme)
    release_dir = out_readme.parent
    plots = release_dir / "plots"
    seeds = {r["split"]: r for r in _load_json(seed_reports)}
    gen = _load_json(generation_stats)
    shard_stats: dict[str, list[dict]] = {}
    for stats_file in _load_json(release_stats):
        shard_stats.setdefault(stats_file["split"], []).append(stats_file)

    per_split: dict[str, dict] = {}
    filters: dict[str, dict] = {}
    dists = {"seed_data": {}, "format": {}, "audience": {}}
    lengths: dict[str, Counter] = {}
    revisions: set[str] = set()
    for split, shards in shard_stats.items():
        totals = split_totals(shards)
        filters[split] = {
            "generated": totals["generated"],
            "left_out": totals["left_out"],
            "truncated_kept": totals["truncated_kept"],
            "min_token_length": shards[0]["min_token_length"],
        }
        per_split[split] = {
            "rows": totals["rows"],
            "tokens": totals["tokens"],
            "files": totals["files"],
            "generated": totals["generated"],
            "left_out": totals["left_out"],
            "truncated_kept": totals["truncated_kept"],
        }
        for column in dists:
            dists[column][split] = Counter()
        lengths[split] = Counter()
        for shard in shards:
            revisions.update(shard["model_revisions"])
            for column in dists:
                dists[column][split].update(shard["distributions"][column])
            lengths[split].update({int(n): c for n, c in shard["token_length_counts"].items()})

    quality = _quality_by_template(shard_stats)
    fates = ledger_fates(ledger) if ledger else None
    diversity = merge_diversity(
        [s.get("diversity", {}) for shards in shard_stats.values() for s in shards]
    )
    for column, counts in dists.items():
        _bar_plot(counts, f"{column} per split", plots / f"{column}.png")
    _length_plot(lengths, plots / "token_length.png")

    total_rows = sum(s["rows"] for s in per_split.values())
    total_tokens = sum(s["tokens"] for s in per_split.values())
    completion_tokens = sum(g["completion_tokens"] for g in gen)
    generate_s = sum(g["generate_s"] for g in gen)
    stats = {
        "diversity": diversity,
        "fates": fates,
        "quality": quality,
        "splits": per_split,
        "rows": total_rows,
        "tokens": total_tokens,
        "filtered": {s: f["left_out"] for s, f in filters.items()},
        "seed_rows_skipped": {
            s: sum(src["rows_skipped"] for src in r["sources"]) for s, r in seeds.items()
        },
        "generation": {
            "shards": len(gen),
            "completion_tokens": completion_tokens,
            "generate_s": round(generate_s, 2),
            "engine_start_s": round(sum(g["engine_start_s"] for g in gen), 2),
            "completion_tokens_per_s": round(completion_tokens / generate_s, 2)
            if generate_s
            else None,
            "resumed_rows": sum(g["resumed_rows"] for g in gen),
            # GPU-hours the generation jobs held (wall time x GPUs, start-up included; the
            # last attempt of each shard).
            "gpu_hours": round(sum(g.get("gpu_hours", 0) for g in gen), 4),
            **_prefix_cache(gen),
        },
    }
    dedup = json.loads(Path(dedup_report).read_text()) if dedup_report else None
    contam = json.loads(Path(contamination).read_text()) if contamination else None
    bench = json.loads(Path(benchmarks).read_text()) if benchmarks else None
    if dedup:
        stats["dedup"] = {"removed": dedup["removed"], "documents": dedup["documents"]}
    if contam:
        stats["contaminated"] = contam["contaminated"]
    topics = json.loads(Path(topics_report).read_text()) if topics_report else None
    if topics:
        stats["topics"] = {
            "clusters": len(topics["clusters"]),
            "kept_clusters": topics["kept_clusters"],
            "seeds_per_split": topics["seeds_per_split"],
        }
        # The topic plots travel with the card.
        for plot in TOPIC_PLOTS:
            source = Path(topics_report).parent / f"{plot}.png"
            with atomic_path(plots / f"{plot}.png") as tmp:
                shutil.copyfile(source, tmp)
    write_json(out_stats, stats)

    header = {
        "pretty_name": "cosmoforge synthetic dataset",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "configs": [
            {"config_name": split, "data_files": [{"split": "train", "path": f"{split}/*.parquet"}]}
            for split in per_split
        ],
    }
    model = settings["model"]
    revision = ", ".join(sorted(revisions)) or "n/a"
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).strip(),
        "---",
        "",
        "# cosmoforge synthetic dataset",
        "",
        f"Synthetic textbooks, blog posts, stories and WikiHow-style articles generated by "
        f"`{model['name']}` (revision `{revision}`) from seed "
        f"data, in the manner of Cosmopedia. Run `{settings.get('run_name', '')}`: "
        f"{total_rows} rows, {total_tokens} tokens.",
        "",
        "Each split is a folder of parquet files, one per generation shard "
        "(`<split>/train-00000-of-N.parquet`, ...); load one split with "
        '`datasets.load_dataset("parquet", data_dir="<this folder>/<split>")`.',
        "",
        "## Rows and tokens per split",
        "",
        _table(
            [
                "split",
                "files",
                "rows",
                "tokens",
                "generated",
                "left out (reason: count)",
                "kept but hit max_tokens",
            ],
            [
                [
                    s,
                    v["files"],
                    v["rows"],
                    v["tokens"],
                    filters.get(s, {}).get("generated", ""),
                    ", ".join(
                        f"{k}: {n}" for k, n in filters.get(s, {}).get("left_out", {}).items()
                    )
                    or "none",
                    filters.get(s, {}).get("truncated_kept", ""),
                ]
                for s, v in per_split.items()
            ]
            + [["**total**", "", total_rows, total_tokens, "", "", ""]],
        ),
        "",
        f"`token_length` counts tokens of `text` with the {TOKENIZER_NAME}, **without** BOS "
        "or EOS (Cosmopedia's generation script counted BOS, i.e. one more). Texts shorter than "
        f"{next(iter(filters.values()), {}).get('min_token_length', '?')} tokens, and engine "
        "errors, are left out of the release and counted above.",
        "",
        "![token length](plots/token_length.png)",
        "",
    ]
    lines += _fates_section(fates)
    lines += _quality_section(quality, shard_stats)
    lines += _diversity_section(diversity)
    lines += _variant_section(shard_stats)
    for column in dists:
        lines += [f"## {column}", "", f"![{column}](plots/{column}.png)", ""]
        categories = sorted({c for counter in dists[column].values() for c in counter})
        lines.append(
            _table(
                ["split"] + categories,
                [[s] + [dists[column][s].get(c, 0) for c in categories] for s in dists[column]],
            )
        )
        lines.append("")
    lines += [
        "## Seeds",
        "",
        _table(
            ["split", "seeds used", "source rows read", "bad rows skipped"],
            [
                [
                    s,
                    r["seeds"],
                    sum(src["rows_read"] for src in r["sources"]),
                    sum(src["rows_skipped"] for src in r["sources"]),
                ]
                for s, r in seeds.items()
            ],
        ),
        "",
        "## Model and sampling",
        "",
        f"- model: `{model['name']}`, loaded from `{model['path']}`, revision `{revision}`",
        "- engine: vLLM offline `LLM`, settings "
        f"`{json.dumps(settings['engine'], sort_keys=True)}`",
        "- sampling per split (each request also gets a seed derived from its sample id):",
        "",
        _table(
            ["split", "sampling"],
            [[s, f"`{json.dumps(p, sort_keys=True)}`"] for s, p in settings["sampling"].items()],
        ),
        "",
        "## Generation",
        "",
        f"{len(gen)} shard jobs, {completion_tokens} completion tokens in {generate_s:.1f} s of "
        f"generation ({stats['generation']['completion_tokens_per_s']} tokens/s per job), "
        f"{stats['generation']['engine_start_s']:.1f} s of engine start-up, "
        f"{stats['generation']['resumed_rows']} rows resumed from checkpoints; "
        f"{stats['generation']['gpu_hours']:.3f} GPU-hours held by the generation jobs. "
        + _prefix_cache_sentence(stats["generation"]),
        "",
        "## Columns",
        "",
        "`prompt, text, seed_data, token_length, format, audience` as in Cosmopedia, then "
        "provenance: `sample_id, split, seed_id, template_id, template_version, variant, topic, "
        "topic_injected, topic_cluster, finish_reason, prompt_tokens, completion_tokens, model, "
        "model_revision, engine, engine_version, sampling, request_seed`.",
        "",
    ]
    lines += _topic_lines(topics) + _dedup_lines(dedup) + _contamination_lines(contam, bench)
    write_text(out_readme, "\n".join(lines))
    return stats


def _topic_lines(topics: dict | None) -> list[str]:
    if not topics:
        return []
    fit = topics["fit"]
    rows = [
        [
            c["id"],
            c["size"],
            c["topic"] or "(no label)",
            c["score"] if c["score"] is not None else "",
            c["decision"],
            c["route"] or "",
            c["reason"],
            c["examples"][:160].replace("|", "/"),
        ]
        for c in topics["clusters"]
    ]
    per_split = ", ".join(
        f"{s}: {c.get('kept', 0)} kept, {c.get('dropped', 0)} dropped"
        for s, c in topics["seeds_per_split"].items()
    )
    return [
        "## Topics of the web seeds",
        "",
        f"Web seeds were embedded with `{topics['embedding_model']}` and clustered with faiss "
        f"k-means (k={fit['k']}, fitted on {fit['sample_size']} seeds, seed {fit['seed']}, "
        f"{fit['nredo']} restarts); every seed joins its nearest centroid. Each cluster was "
        "labelled by the generation model (topic, educational value 1-10, format), parsed "
        f"strictly; clusters scoring under {topics['min_score']}, or without a label, are "
        f"dropped. {topics['kept_clusters']} of {len(topics['clusters'])} clusters kept "
        f"({topics['label_errors']} label errors). Seeds: {per_split}. The web prompts name "
        "their cluster's topic and use the templates of its route.",
        "",
        _table(["id", "size", "topic", "score", "decision", "route", "reason", "examples"], rows),
        "",
        "![topic map](plots/topic_map.png)",
        "",
        "![topic distribution](plots/topic_distribution.png)",
        "",
        "![score histogram](plots/score_histogram.png)",
        "",
    ]


def _dedup_lines(dedup: dict | None) -> list[str]:
    if not dedup:
        return ["## Deduplication", "", "Not part of this run.", ""]
    p = dedup["parameters"]
    return [
        "## Deduplication",
        "",
        f"MinHash (datatrove) across all splits: word {p['n_grams']}-grams, "
        f"{p['num_buckets']} buckets x {p['hashes_per_bucket']} hashes (LSH threshold about "
        f"{(1 / p['num_buckets']) ** (1 / p['hashes_per_bucket']):.2f}), {p['hash_precision']}-bit "
        f"{p['hash_fc']}, seed {p['seed']}. {dedup['removed']} of {dedup['documents']} generated "
        "documents removed as near-duplicates; each removed document is listed with the one kept "
        "in `dedup/removed.parquet` of the run.",
        "",
        _table(
            ["split", "generated", "removed", "rate"],
            [
                [s, c["documents"], c["removed"], f"{100 * c['rate']:.2f}%"]
                for s, c in dedup["per_split"].items()
            ],
        ),
        "",
    ]


def _contamination_lines(contam: dict | None, bench: dict | None) -> list[str]:
    if not contam:
        return ["## Decontamination", "", "Not part of this run.", ""]
    p = contam["parameters"]
    benchmarks = sorted({b for cells in contam["table"].values() for b in cells})
    lines = [
        "## Decontamination",
        "",
        f"Cosmopedia's rule: normalized word {p['ngram']}-gram overlap with a benchmark item "
        "makes a candidate; difflib's SequenceMatcher then marks the document contaminated when "
        f"matched length / item length > {p['threshold']}. Every n-gram maps to every item "
        "containing it and every candidate is checked. Removed samples per split group, with "
        "the number of unique benchmark items in brackets:",
        "",
        _table(
            ["group"] + benchmarks,
            [
                [g] + [f"{n} ({u})" for n, u in (cells[b] for b in benchmarks)]
                for g, cells in contam["table"].items()
            ],
        ),
        "",
    ]
    if bench:
        lines += [
            "Benchmark texts used:",
            "",
            _table(
                ["benchmark", "items", "texts", "rows skipped", "fields joined"],
                [
                    [b, r["items"], r["texts"], r["rows_skipped"], r["fields"]]
                    for b, r in bench.items()
                ],
            ),
            "",
        ]
    return lines


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


def _prefix_cache_sentence(generation: dict) -> str:
    if generation["prefix_cache_hit_rate"] is None:
        return "No prefix-cache figures were recorded."
    return (
        f"vLLM's prefix cache served {generation['prefix_cache_hit_rate']:.1%} of the prompt "
        f"tokens ({generation['prefix_cache_hits']:,} of {generation['prefix_cache_queries']:,}): "
        "a seed's prompts are adjacent and open with its extract."
    )


def _quality_by_template(shard_stats: dict[str, list[dict]]) -> dict[str, dict]:
    """Rows and quality flags per template, summed over the shards' statistics."""
    totals: dict[str, Counter] = {}
    for shards in shard_stats.values():
        for shard in shards:
            for template, counts in shard.get("flags_by_template", {}).items():
                totals.setdefault(template, Counter()).update(counts)
    return {t: {"rows": c["rows"], **{f: c[f] for f in FLAGS}} for t, c in sorted(totals.items())}


def _quality_section(quality: dict[str, dict], shard_stats: dict[str, list[dict]]) -> list[str]:
    if not quality:
        return []
    drop = sorted(
        {d for shards in shard_stats.values() for s in shards for d in s.get("quality_drop", [])}
    )
    return [
        "## Quality flags",
        "",
        "Share of each template's generated texts (engine errors aside) with each flag "
        "(cosmoforge.quality; patterns in prompts/quality.yaml). Flags that leave a row out: "
        f"{', '.join(drop) or 'none'}; the others are kept and marked in the `flag_*` columns.",
        "",
        _table(
            ["template", "texts", *FLAGS],
            [
                [t, q["rows"], *(f"{q[f] / q['rows']:.1%}" if q["rows"] else "-" for f in FLAGS)]
                for t, q in quality.items()
            ],
        ),
        "",
    ]


def ledger_fates(path: str | Path) -> dict[str, dict[str, int]]:
    """Prompts per split and fate, from the ledger's two columns."""
    table = pq.read_table(path, columns=["split", "fate"])
    counts = table.group_by(["split", "fate"]).aggregate([("fate", "count")]).to_pylist()
    fates: dict[str, dict[str, int]] = {}
    for row in sorted(counts, key=lambda r: (r["split"], r["fate"])):
        fates.setdefault(row["split"], {})[row["fate"]] = row["fate_count"]
    return fates


def _fates_section(fates: dict | None) -> list[str]:
    if not fates:
        return []
    names = sorted({f for per_split in fates.values() for f in per_split})
    return [
        "## What became of every prompt",
        "",
        "From `ledger.parquet` (one row per prompt; `cosmoforge explain SAMPLE_ID` shows one).",
        "",
        _table(
            ["split", "prompts", *names],
            [[s, sum(f.values()), *(f.get(n, 0) for n in names)] for s, f in fates.items()],
        ),
        "",
    ]


def _diversity_section(diversity: dict[str, dict]) -> list[str]:
    if not diversity:
        return []
    return [
        "## Diversity",
        "",
        "Per template: the share of texts whose first 3 (and 5) words are one of the 5 most "
        "common openings of that template (lower is more varied), the most common 3-word "
        "opening, and distinct-2/3 (distinct word n-grams over all n-grams) of a sample of up "
        "to 200 texts per shard.",
        "",
        _table(
            [
                "template",
                "texts",
                "top-5 share, 3 words",
                "top-5 share, 5 words",
                "most common opening",
                "distinct-2",
                "distinct-3",
            ],
            [
                [
                    t,
                    d["texts"],
                    f"{d['top5_share_3']:.1%}",
                    f"{d['top5_share_5']:.1%}",
                    f"`{d['top_openings_3'][0]}`" if d["top_openings_3"] else "-",
                    d["distinct_2"],
                    d["distinct_3"],
                ]
                for t, d in diversity.items()
            ],
        ),
        "",
    ]


def _variant_section(shard_stats: dict[str, list[dict]]) -> list[str]:
    rows = []
    for split, shards in shard_stats.items():
        figures = [s["variant_similarity"] for s in shards if s.get("variant_similarity")]
        pairs = sum(f["pairs"] for f in figures)
        if not pairs:
            continue
        mean = sum(f["mean_jaccard"] * f["pairs"] for f in figures if f["pairs"]) / pairs
        similar = sum(f["pairs_above_0_5"] for f in figures)
        rows.append([split, pairs, f"{mean:.3f}", similar])
    if not rows:
        return []
    return [
        "Texts of one seed's different prompts (formats, audiences, variants), compared pairwise "
        "by word 5-gram Jaccard similarity: near 0 means each prompt gave a different text.",
        "",
        _table(["split", "pairs", "mean similarity", "pairs above 0.5"], rows),
        "",
    ]
