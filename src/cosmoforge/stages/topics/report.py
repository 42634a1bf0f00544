"""topics report: the clusters table, the plots and the report the card reads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from cosmoforge.core.io import atomic_path, read_parquet, write_json, write_text
from cosmoforge.stages.topics.decide import load_decisions
from cosmoforge.stages.topics.embed import read_embeddings
from cosmoforge.stages.topics.kmeans import load_centroids, read_assignments

CLUSTER_COLUMNS = ["id", "size", "topic", "score", "decision", "route", "reason", "examples"]
PLOTS = ("topic_map", "topic_distribution", "score_histogram")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _short(text: str | None, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _pca_2d(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic 2-D view (PCA by SVD, signs fixed) of points and centroids."""
    mean = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - mean, full_matrices=False)
    axes = vt[:2]
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    return (points - mean) @ axes.T, (centroids - mean) @ axes.T


def topic_map_plot(
    map_sample_path: str | Path,
    assignments: pa.Table,
    centroids: np.ndarray,
    decisions: list[dict],
    path: Path,
) -> None:
    plt = _pyplot()
    splits, ids, vectors = read_embeddings(map_sample_path)
    cluster_of = {
        (s, i): c
        for s, i, c in zip(
            assignments.column("split").to_pylist(),
            assignments.column("seed_id").to_pylist(),
            assignments.column("cluster").to_pylist(),
            strict=True,
        )
    }
    fig, ax = plt.subplots(figsize=(9, 7))
    if ids:
        labels = np.array([cluster_of[key] for key in zip(splits, ids, strict=True)])
        xy, cxy = (
            _pca_2d(vectors, centroids) if len(ids) > 2 else (vectors[:, :2], centroids[:, :2])
        )
        cmap = plt.get_cmap("tab20")
        for entry in decisions:
            c = entry["id"]
            mine = labels == c
            kept = entry["decision"] == "keep"
            ax.scatter(
                xy[mine, 0],
                xy[mine, 1],
                s=12 if len(ids) < 1000 else 3,
                color=cmap(c % 20) if kept else "lightgrey",
                marker="o" if kept else "x",
            )
            # Label at the middle of the cluster's points: a unit centroid projects further
            # out than its points, often off the plot.
            where = xy[mine].mean(axis=0) if mine.any() else cxy[c]
            ax.annotate(
                f"{c}: {_short(entry.get('topic') or '(no label)', 28)}",
                where,
                fontsize=8,
                ha="center",
                color="black" if kept else "grey",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.7, "linewidth": 0},
            )
    ax.set_title(f"Web seed clusters (PCA of embeddings; grey x = dropped; {len(ids)} points)")
    ax.set_xticks([])
    ax.set_yticks([])
    _save(fig, path)


def topic_distribution_plot(decisions: list[dict], path: Path) -> None:
    plt = _pyplot()
    entries = sorted(decisions, key=lambda e: (-e["size"], e["id"]))
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(entries), 4) + 1.5))
    names = [f"{e['id']}: {_short(e.get('topic') or '(no label)', 40)}" for e in entries]
    colors = ["tab:blue" if e["decision"] == "keep" else "lightgrey" for e in entries]
    ax.barh(names, [e["size"] for e in entries], color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("web seeds")
    ax.set_title("Seeds per topic (grey: dropped)")
    _save(fig, path)


def score_histogram_plot(decisions: list[dict], min_score: int | None, path: Path) -> None:
    plt = _pyplot()
    scores = [e["score"] for e in decisions if e.get("score") is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(scores, bins=np.arange(0.5, 11.5, 1.0), color="tab:green", edgecolor="white")
    if min_score is not None:
        ax.axvline(min_score - 0.5, color="red", linestyle="--", label=f"min_score {min_score}")
        ax.legend()
    ax.set_xticks(range(1, 11))
    ax.set_xlabel("educational value (1-10)")
    ax.set_ylabel("clusters")
    unlabelled = len(decisions) - len(scores)
    ax.set_title(f"Cluster scores ({unlabelled} without a label)")
    _save(fig, path)


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def topics_report(
    decisions_path: str | Path,
    labels_path: str | Path,
    assignment_paths: list[str | Path],
    map_sample_path: str | Path,
    centroids_path: str | Path,
    fit_report_path: str | Path,
    settings: dict,
    out_dir: str | Path,
) -> dict:
    """The cluster table (CSV), report.json (drops and their reasons) and the three plots."""
    import json

    out_dir = Path(out_dir)
    labels = {r["cluster"]: r for r in read_parquet(labels_path).to_pylist()}
    decisions = load_decisions(decisions_path, len(labels))
    assignments = read_assignments(assignment_paths)
    rows = []
    for entry in decisions:
        label = labels[entry["id"]]
        rows.append(
            {
                **{c: entry.get(c) for c in CLUSTER_COLUMNS if c != "examples"},
                "size": label["size"],
                "examples": " || ".join(_short(t, 160) for t in label["examples"][:3]),
            }
        )
    write_text(out_dir / "clusters.csv", _csv_text(rows, CLUSTER_COLUMNS))
    per_split: dict[str, Counter] = {}
    keep = {e["id"]: e["decision"] == "keep" for e in decisions}
    for split, cluster in zip(
        assignments.column("split").to_pylist(),
        assignments.column("cluster").to_pylist(),
        strict=True,
    ):
        per_split.setdefault(split, Counter())["kept" if keep[cluster] else "dropped"] += 1
    fit = json.loads(Path(fit_report_path).read_text(encoding="utf-8"))
    report = {
        "fit": fit,
        "embedding_model": settings["embedding_model"],
        "min_score": settings["min_score"],
        "clusters": rows,
        "kept_clusters": sum(keep.values()),
        "dropped_clusters": [
            {"id": e["id"], "topic": e.get("topic"), "reason": e.get("reason")}
            for e in decisions
            if e["decision"] == "drop"
        ],
        "label_errors": sum(1 for r in labels.values() if r["error"]),
        "seeds_per_split": {s: dict(sorted(c.items())) for s, c in sorted(per_split.items())},
        "routes": dict(sorted(Counter(e.get("route") for e in decisions if keep[e["id"]]).items())),
    }
    write_json(out_dir / "report.json", report)
    centroids = load_centroids(centroids_path)
    topic_map_plot(map_sample_path, assignments, centroids, decisions, out_dir / "topic_map.png")
    topic_distribution_plot(decisions, out_dir / "topic_distribution.png")
    score_histogram_plot(decisions, settings["min_score"], out_dir / "score_histogram.png")
    return report
