"""MinHash dedup: throughput per core and detection rate by true Jaccard, beside the theory
1-(1-s^r)^b and datasketch's MinHashLSH with the same (b, r).

Planted pairs: a random base document and a copy with a given share of its words replaced;
their true 5-gram Jaccard decides the bucket. Everything else in the corpus is unrelated. The
stages run exactly as the workflow runs them (cosmoforge.stages.dedup, one datatrove rank per call).

    .venv/bin/python measure/dedup_quality.py [--docs 4000] [--pairs-per-rate 30]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cosmoforge.core.tables import GENERATION_SCHEMA  # noqa: E402
from cosmoforge.stages import dedup  # noqa: E402

PARAMS = {
    "n_grams": 5,
    "num_buckets": 14,
    "hashes_per_bucket": 8,
    "seed": 1,
    "hash_precision": 64,
    "hash_fc": "xxhash",
    "bucket_workers": 1,
}
RATES = [0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1, 0.15, 0.25]
BUCKETS = [
    (0.0, 0.5),
    (0.5, 0.6),
    (0.6, 0.7),
    (0.7, 0.8),
    (0.8, 0.85),
    (0.85, 0.9),
    (0.9, 0.95),
    (0.95, 1.01),
]


def shingles(text: str, n: int = 5) -> set[str]:
    words = text.split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=4000, help="unrelated documents")
    parser.add_argument("--pairs-per-rate", type=int, default=30)
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    rng = random.Random(1)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(20000)]

    def doc(k=300):
        return " ".join(rng.choices(vocab, k=k))

    texts, pairs = [], []  # pairs: (index of original, index of copy, true jaccard)
    for rate in RATES:
        for _ in range(args.pairs_per_rate):
            base = doc()
            words = base.split()
            for i in rng.sample(range(len(words)), round(rate * len(words))):
                words[i] = rng.choice(vocab)
            copy = " ".join(words)
            a, b = shingles(base), shingles(copy)
            pairs.append((len(texts), len(texts) + 1, len(a & b) / len(a | b)))
            texts += [base, copy]
    texts += [doc() for _ in range(args.docs)]
    order = list(range(len(texts)))
    rng.shuffle(order)  # originals and copies land in different shards
    position = {old: new for new, old in enumerate(order)}
    texts = [texts[i] for i in order]
    pairs = [(position[a], position[b], j) for a, b, j in pairs]
    print(
        f"{len(texts)} documents of 300 words, {len(pairs)} planted pairs, "
        f"{args.shards} shards; MinHash {PARAMS['num_buckets']}x{PARAMS['hashes_per_bucket']}, "
        f"5-grams"
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shard_files, ids = [], []
        per = -(-len(texts) // args.shards)
        for s in range(args.shards):
            rows = []
            for i in range(s * per, min(len(texts), (s + 1) * per)):
                row = dict.fromkeys(GENERATION_SCHEMA.names)
                row.update(sample_id=f"d{i}", split="bench", shard=s, text=texts[i])
                rows.append(row)
            path = tmp / f"{s:05d}.parquet"
            pq.write_table(pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA), path)
            shard_files.append(path)
        timings = {}
        started = time.perf_counter()
        for rank, path in enumerate(shard_files):
            dedup.signatures(path, rank, args.shards, tmp / "sigs", PARAMS, tmp / "l1")
        timings["signatures"] = time.perf_counter() - started
        started = time.perf_counter()
        for rank in range(PARAMS["num_buckets"]):
            dedup.buckets(tmp / "sigs", rank, tmp / "buckets", PARAMS, tmp / "l2")
        timings["buckets"] = time.perf_counter() - started
        started = time.perf_counter()
        dedup.cluster(tmp / "buckets", tmp / "remove", PARAMS, tmp / "l3")
        timings["cluster"] = time.perf_counter() - started
        started = time.perf_counter()
        removed = set()
        for rank, path in enumerate(shard_files):
            outs = [tmp / f"k{rank}.parquet", tmp / f"r{rank}.parquet", tmp / f"c{rank}.json"]
            dedup.filter_shard(path, rank, tmp / "remove", *outs)
            removed.update(pq.read_table(outs[1]).column("sample_id").to_pylist())
        timings["filter"] = time.perf_counter() - started
        ids = {f"d{i}" for i in range(len(texts))}
    total = sum(timings.values())
    print(
        "datatrove stages (one process, so per core): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        + f"; {len(texts) / total:,.0f} docs/s per core overall, signatures alone "
        f"{len(texts) / timings['signatures']:,.0f} docs/s"
    )

    from datasketch import MinHash, MinHashLSH

    started = time.perf_counter()
    lsh = MinHashLSH(num_perm=112, params=(14, 8))
    ds_removed = set()
    for i, text in enumerate(texts):
        m = MinHash(num_perm=112, seed=1)
        m.update_batch([s.encode() for s in shingles(text)])
        if lsh.query(m):
            ds_removed.add(f"d{i}")
        else:
            lsh.insert(f"d{i}", m)
    ds_s = time.perf_counter() - started
    rate = len(texts) / ds_s
    print(f"datasketch MinHashLSH (14, 8), one process: {ds_s:.1f} s = {rate:,.0f} docs/s")

    b, r = PARAMS["num_buckets"], PARAMS["hashes_per_bucket"]
    print(f"\n{'true Jaccard':<14}{'pairs':>6}{'cosmoforge':>12}{'datasketch':>12}{'theory':>9}")
    for low, high in BUCKETS:
        inside = [(a, c, j) for a, c, j in pairs if low <= j < high]
        if not inside:
            continue
        ours = sum(1 for a, c, _ in inside if {f"d{a}", f"d{c}"} & removed) / len(inside)
        theirs = sum(1 for a, c, _ in inside if {f"d{a}", f"d{c}"} & ds_removed) / len(inside)
        theory = sum(1 - (1 - j**r) ** b for *_, j in inside) / len(inside)
        print(
            f"{low:.2f}-{min(high, 1):.2f}    {len(inside):>6}{ours:>12.2f}{theirs:>12.2f}"
            f"{theory:>9.2f}"
        )
    high = [(a, c) for a, c, j in pairs if j >= 0.85]
    low = [(a, c) for a, c, j in pairs if j < 0.5]
    planted = {f"d{i}" for a, c, _ in pairs for i in (a, c)}
    print(
        f"\npairs with Jaccard >= 0.85 removed: "
        f"{sum(1 for a, c in high if {f'd{a}', f'd{c}'} & removed) / len(high):.3f} "
        "(goal >= 0.95); "
        f"pairs under 0.5 removed: "
        f"{sum(1 for a, c in low if {f'd{a}', f'd{c}'} & removed) / max(len(low), 1):.3f} "
        f"(goal <= 0.01); unrelated documents removed: {len((removed - planted) & ids)}"
    )


if __name__ == "__main__":
    main()
