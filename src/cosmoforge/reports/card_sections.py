"""The figures of each part of the dataset card, one function per section, from the stage
reports and the release shards' statistics (never from released text)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from cosmoforge.stages.quality import FLAGS
from cosmoforge.stages.release import split_totals


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
    section = {}
    for r in seed_reports:
        gated: Counter = Counter()
        repaired: Counter = Counter()
        for src in r["sources"]:
            gated.update(src.get("gated_by_reason", {}))
            repaired.update(src.get("repaired_by_reason", {}))
        section[r["split"]] = {
            "seeds": r["seeds"],
            "rows_read": sum(src["rows_read"] for src in r["sources"]),
            "rows_skipped": sum(src["rows_skipped"] for src in r["sources"]),
            "gated": dict(sorted(gated.items())),
            "repaired": dict(sorted(repaired.items())),
        }
    return section


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
        # engines started again inside a job after they died or froze, and the seconds lost
        "engine_restarts": sum(g.get("engine_restarts", 0) for g in gen),
        "engine_lost_s": round(sum(g.get("engine_lost_s", 0.0) for g in gen), 1),
        # GPU-hours the generation jobs held (wall time x GPUs, start-up included; the last
        # attempt of each shard).
        "gpu_hours": round(sum(g.get("gpu_hours", 0) for g in gen), 4),
        **prefix_cache(gen),
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


def prefix_cache(gen: list[dict]) -> dict:
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
