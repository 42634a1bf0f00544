"""What near-duplicate seeds cost, and what finding them costs: datatrove's MinHash (the stages
the outputs' dedup runs, cosmoforge.stages.dedup, the config's dedup parameters) over a split's
seed file, after the seeds stage has left out exact duplicates.

Prints the seeds that fall in a near-duplicate cluster (all but one per cluster would go), the
prompts and GPU-hours they would cost at the Cosmopedia preset's figures (templates per web
seed as the plan counts them, expected completion tokens, tokens/s per GPU), and the MinHash
pass's CPU seconds per million seeds.

Input: a seed file (`--seeds-file`, e.g. results/<run>/seeds/web_samples_v1.parquet from your
own export), or synthetic web pages (`--synthetic N`): articles of 150-600 words, a share of
them (`--near-share`) published again with another site's header and footer, the way one
story is syndicated, and a share copied exactly (which the seeds stage removes first).

    .venv/bin/python measure/seed_near_dups.py --synthetic 20000
    .venv/bin/python measure/seed_near_dups.py --seeds-file results/<run>/seeds/<split>.parquet
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cosmoforge.core.config import load_config  # noqa: E402
from cosmoforge.core.tables import GENERATION_SCHEMA  # noqa: E402
from cosmoforge.ops.plan import estimate_split  # noqa: E402
from cosmoforge.stages import dedup  # noqa: E402
from cosmoforge.stages.seeds import write_split_seeds  # noqa: E402
from cosmoforge.stages.seeds.gates import SeedGates  # noqa: E402

SHARDS = 2


def synthetic_pages(path: Path, count: int, near_share: float, exact_share: float) -> None:
    rng = random.Random(3)
    vocab = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9)))
        for _ in range(30000)
    ]

    def sentences(words: int) -> str:
        return " ".join(rng.choices(vocab, k=words)).capitalize() + "."

    def frame(site: int) -> tuple[str, str]:
        day, year = rng.randint(1, 28), rng.randint(2010, 2024)
        header = f"Home | News | Sport | Site {site} | Contact. Posted on {day} May."
        footer = f"Share this story. Copyright {year} Site {site}. All rights reserved."
        return header, footer

    rows, articles = [], []
    for i in range(count):
        draw = rng.random()
        if articles and draw < near_share:
            header, footer = frame(rng.randint(1, 500))
            text = f"{header}\n{rng.choice(articles)}\n{footer}"
        elif articles and draw < near_share + exact_share:
            text = rng.choice(rows)["text"]
        else:
            article = sentences(rng.randint(150, 600))
            articles.append(article)
            header, footer = frame(rng.randint(1, 500))
            text = f"{header}\n{article}\n{footer}"
        rows.append({"id": f"p{i}", "text": text})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds-file", type=Path)
    parser.add_argument("--synthetic", type=int, default=20000)
    parser.add_argument("--near-share", type=float, default=0.05)
    parser.add_argument("--exact-share", type=float, default=0.03)
    args = parser.parse_args()
    preset = load_config(REPO / "config" / "presets" / "cosmopedia.yaml")
    params = {**preset["dedup"], "bucket_workers": 1}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seeds_file = args.seeds_file
        if seeds_file is None:
            pages = tmp / "pages.jsonl"
            synthetic_pages(pages, args.synthetic, args.near_share, args.exact_share)
            seeds_file = tmp / "seeds.parquet"
            source = {"name": "web", "kind": "web", "format": "jsonl", "path": str(pages)}
            report = write_split_seeds(
                "web_samples_v1", [source], seeds_file, gates=SeedGates(min_chars={"web": 200})
            )
            gated = report["sources"][0]["gated_by_reason"]
            print(
                f"{args.synthetic:,} synthetic pages ({args.near_share:.0%} syndicated with "
                f"another header and footer, {args.exact_share:.0%} exact copies): the seeds "
                f"stage kept {report['seeds']:,}, left out {gated}"
            )
        table = pq.read_table(seeds_file, columns=["seed_id", "text"])
        seeds = table.num_rows
        shard_files, per = [], -(-seeds // SHARDS)
        for s in range(SHARDS):
            part = table.slice(s * per, per)
            columns = {
                name: pa.nulls(part.num_rows, field.type)
                for name, field in zip(GENERATION_SCHEMA.names, GENERATION_SCHEMA, strict=True)
            }
            columns.update(
                sample_id=part.column("seed_id").cast(pa.string()),
                split=pa.array(["seeds"] * part.num_rows),
                shard=pa.array([s] * part.num_rows, GENERATION_SCHEMA.field("shard").type),
                text=part.column("text"),
            )
            path = tmp / f"{s:05d}.parquet"
            pq.write_table(pa.table(columns, schema=GENERATION_SCHEMA), path)
            shard_files.append(path)
        cpu = time.process_time()
        for rank, path in enumerate(shard_files):
            dedup.signatures(path, rank, SHARDS, tmp / "sigs", params, tmp / "l1")
        for rank in range(params["num_buckets"]):
            dedup.buckets(tmp / "sigs", rank, tmp / "buckets", params, tmp / "l2")
        dedup.cluster(tmp / "buckets", tmp / "remove", params, tmp / "l3")
        removed = 0
        for rank, path in enumerate(shard_files):
            outs = [tmp / f"k{rank}.parquet", tmp / f"r{rank}.parquet", tmp / f"c{rank}.json"]
            dedup.filter_shard(path, rank, tmp / "remove", *outs)
            removed += pq.read_metadata(outs[1]).num_rows
        cpu = time.process_time() - cpu
    split = estimate_split(preset, "web_samples_v1", REPO)
    per_seed = split["prompts"] / split["seeds"]
    tokens = preset["slurm"]["expected_completion_tokens"] or split["max_tokens"]
    gpu_hours = removed * per_seed * tokens / preset["slurm"]["tokens_per_s_per_gpu"] / 3600
    print(
        f"{seeds:,} seeds: {removed:,} ({removed / seeds:.2%}) are near duplicates of another "
        f"seed (MinHash {params['num_buckets']}x{params['hashes_per_bucket']}, "
        f"{params['n_grams']}-grams)"
    )
    print(
        f"at the preset's figures ({per_seed:.2f} prompts per web seed, {tokens:,} tokens per "
        f"prompt, {preset['slurm']['tokens_per_s_per_gpu']} tokens/s per GPU): "
        f"{removed * per_seed:,.0f} prompts, {gpu_hours:,.2f} GPU-hours; "
        f"per million seeds at this share: {gpu_hours / seeds * 1e6:,.1f} GPU-hours"
    )
    print(f"MinHash pass: {cpu:.1f} CPU s, {cpu / seeds * 1e6:,.0f} CPU s per million seeds")


if __name__ == "__main__":
    main()
