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

One module per stage: embed, kmeans (fit and assign), label, decide, report; common holds the
names they share.
"""

from pathlib import Path

from cosmoforge.core.declare import SPLIT, Command, count_arg, json_arg, path_arg, paths_arg
from cosmoforge.core.settings import TopicLabelSettings
from cosmoforge.stages.topics.common import (
    ASSIGNMENT_SCHEMA,
    DECISIONS,
    LABEL_SCHEMA,
    MAP_POINTS,
    PLACEHOLDER_TOPICS,
)
from cosmoforge.stages.topics.decide import (
    DECISIONS_HEADER,
    decide,
    load_decisions,
    validate_decisions,
)
from cosmoforge.stages.topics.embed import (
    embed_shard,
    embed_texts,
    embedding_model_path,
    load_embedder,
    read_embeddings,
    web_rows,
    write_embeddings,
)
from cosmoforge.stages.topics.kmeans import (
    assign_shard,
    choose_sample,
    fit_kmeans,
    greedy_kmeans_pp,
    inertia,
    kmeans_fit,
    load_centroids,
    nearest_centroid,
    read_assignments,
    sample_key,
)
from cosmoforge.stages.topics.label import (
    Label,
    LabelTemplate,
    cluster_examples,
    label_clusters,
    load_label_template,
    parse_label,
)
from cosmoforge.stages.topics.report import (
    CLUSTER_COLUMNS,
    PLOTS,
    score_histogram_plot,
    topic_distribution_plot,
    topic_map_plot,
    topics_report,
)

__all__ = [
    "assign_shard",
    "ASSIGNMENT_SCHEMA",
    "choose_sample",
    "CLUSTER_COLUMNS",
    "cluster_examples",
    "decide",
    "DECISIONS",
    "DECISIONS_HEADER",
    "embed_shard",
    "embed_texts",
    "embedding_model_path",
    "fit_kmeans",
    "greedy_kmeans_pp",
    "inertia",
    "kmeans_fit",
    "Label",
    "label_clusters",
    "LABEL_SCHEMA",
    "LabelTemplate",
    "load_centroids",
    "load_decisions",
    "load_embedder",
    "load_label_template",
    "MAP_POINTS",
    "nearest_centroid",
    "parse_label",
    "PLACEHOLDER_TOPICS",
    "PLOTS",
    "read_assignments",
    "read_embeddings",
    "sample_key",
    "score_histogram_plot",
    "topic_distribution_plot",
    "topic_map_plot",
    "topics_report",
    "validate_decisions",
    "web_rows",
    "write_embeddings",
]


# --- command line ------------------------------------------------------------------------------


def _topics_command(args) -> None:
    s = args.settings
    if args.stage == "embed":
        embed_shard(args.seeds[0], args.split, args.shard, args.shards, s, args.out)
    elif args.stage == "fit":
        fit_kmeans(args.embeddings, s, args.out, args.fit_report, args.map_sample)
    elif args.stage == "assign":
        assign_shard(args.embeddings[0], args.centroids, args.out)
    elif args.stage == "label":
        seeds = dict(item.split("=", 1) for item in args.split_seeds)
        label_clusters(args.assignments, seeds, s.k, s, args.out)
    elif args.stage == "decide":
        decide(args.labels, s, args.out)
    elif args.stage == "report":
        topics_report(
            args.decisions,
            args.labels,
            args.assignments,
            args.map_sample,
            args.centroids,
            args.fit_report,
            s,
            args.out_dir,
        )


def _settings(shape: str) -> dict:
    return {"required": True, "type": json_arg, "help": f"JSON: {shape}"}


COMMANDS = (
    Command(
        "topics",
        "topic clustering of web seeds, one stage",
        _topics_command,
        {},
        stages={
            "embed": {
                "--settings": _settings("the topics.embedding section"),
                "--split": SPLIT,
                "--seeds": path_arg("the split's seeds", nargs=1),
                "--shard": {"required": True, "type": count_arg},
                "--shards": {"required": True, "type": int},
                "--out": path_arg(),
            },
            "fit": {
                "--settings": _settings('the topics.kmeans section with the run\'s "seed"'),
                "--embeddings": paths_arg(),
                "--out": path_arg("centroids.npy"),
                "--fit-report": path_arg("the fit report to write (JSON)"),
                "--map-sample": {"type": Path, "help": "the 2-D map's sample to write"},
            },
            "assign": {
                "--settings": _settings("{} (assign has none)"),
                "--embeddings": path_arg(nargs=1),
                "--centroids": path_arg(),
                "--out": path_arg(),
            },
            "label": {
                "--settings": TopicLabelSettings.argument(),
                "--assignments": paths_arg(),
                "--split-seeds": {"required": True, "nargs": "+", "metavar": "SPLIT=PATH"},
                "--out": path_arg(),
            },
            "decide": {
                "--settings": _settings("the topics.decisions section"),
                "--labels": path_arg(),
                "--out": path_arg(),
            },
            "report": {
                "--settings": _settings('{"min_score", "embedding_model"}'),
                "--decisions": path_arg(),
                "--labels": path_arg(),
                "--assignments": paths_arg(),
                "--map-sample": path_arg(),
                "--centroids": path_arg(),
                "--fit-report": path_arg("the fit report (JSON) of topics fit"),
                "--out-dir": path_arg("the report folder"),
            },
        },
    ),
)
