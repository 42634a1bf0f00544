import functools
import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

RUN = config["run_name"]
RESULTS = f"results/{RUN}"
LOGS = f"logs/{RUN}"
SPLITS = list(config["splits"])
PLOTS = ["format", "audience", "seed_data", "token_length"]
CLUSTER = config["cluster"]

# Every rule runs `python -m cosmoforge` from this checkout, in the venv or in the rule's conda
# env alike, so the envs carry only third-party dependencies. Local and Slurm jobs inherit it.
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        p for p in (f"{workflow.basedir}/src", os.environ.get("PYTHONPATH")) if p
    )
)
# The planning helpers (time limits) are used here, in the Snakemake process, too.
sys.path.insert(0, f"{workflow.basedir}/src")


wildcard_constraints:
    split="|".join(SPLITS),
    shard=r"\d{5}",


def shard_ids(split):
    return [f"{i:05d}" for i in range(config["splits"][split]["shards"])]


def as_json(data):
    # Sorted keys: the same settings always give the same string, so Snakemake's params
    # trigger reruns only when a setting really changes.
    return json.dumps(data, sort_keys=True)


def split_sampling(split):
    return {**config["sampling"], **config["splits"][split]["sampling"]}


def seeds_settings(wildcards):
    split = config["splits"][wildcards.split]
    return as_json(
        {
            "sources": split["sources"],
            "on_bad_row": config["seeds"]["on_bad_row"],
            "max_seeds": split["max_seeds"],
        }
    )


def prompts_settings(wildcards):
    split = config["splits"][wildcards.split]
    return as_json(
        {
            "seed": config["seed"],
            "shards": split["shards"],
            "extract_chars": split["extract_chars"] or config["seeds"]["extract_chars"],
            "topic_probability": split["topic_probability"],
            "templates": split["templates"],
        }
    )


def generate_settings(wildcards):
    return as_json(
        {
            "seed": config["seed"],
            "model": config["model"],
            "engine": config["engine"],
            "sampling": split_sampling(wildcards.split),
        }
    )


def template_files(wildcards):
    folder = f"{config['prompts_dir']}/{wildcards.split}"
    names = config["splits"][wildcards.split]["templates"]
    if names is None:
        return sorted(glob_wildcards(f"{folder}/{{name}}.yaml").name)
    return names


def template_paths(wildcards):
    folder = f"{config['prompts_dir']}/{wildcards.split}"
    return [f"{folder}/{name}.yaml" for name in template_files(wildcards)]


def seed_files(wildcards):
    sources = config["splits"][wildcards.split]["sources"]
    return [s["path"] for s in sources if s["format"] != "hf"]


def model_input(wildcards):
    # A model converted by this workflow is an input of generation; a hub id is not a file.
    return [config["model"]["path"]] if config["model"]["gguf"] else []


def clean_shards(wildcards):
    """What `collect` merges: the shards after dedup and decontamination."""
    return expand(
        f"{RESULTS}/decontaminated/{wildcards.split}/{{shard}}.parquet",
        shard=shard_ids(wildcards.split),
    )


# Dedup ranks: every generation shard of every split, in one fixed order (datatrove's stage 1
# and stage 4 must see the same rank -> shard mapping; it depends only on the config).
GEN_SHARDS = [(split, shard) for split in SPLITS for shard in shard_ids(split)]
DEDUP = config["dedup"]
SIG_BUCKETS = [f"{b:03d}" for b in range(DEDUP["num_buckets"])]
DEDUP_WORKERS = [f"{w:02d}" for w in range(DEDUP["bucket_workers"])]


def dedup_rank(split, shard):
    return f"{GEN_SHARDS.index((split, shard)):05d}"


def shard_of_rank(wildcards):
    split, shard = GEN_SHARDS[int(wildcards.rank)]
    return f"{RESULTS}/generated/{split}/{shard}.parquet"


def signatures_of_bucket(wildcards):
    bucket = f"{int(wildcards.bucket):03d}"
    return [
        f"{RESULTS}/dedup/signatures/bucket_{bucket}/{dedup_rank(*gs)}.minhash.sig"
        for gs in GEN_SHARDS
    ]


def all_generated(wildcards):
    return [f"{RESULTS}/generated/{split}/{shard}.parquet" for split, shard in GEN_SHARDS]


def per_shard(pattern):
    return [pattern.format(split=split, shard=shard) for split, shard in GEN_SHARDS]


def decont_settings(wildcards):
    return as_json(config["decontamination"])


def benchmark_files(wildcards):
    return [b["path"] for b in config["decontamination"]["benchmarks"].values() if "path" in b]


def generated_stats(wildcards):
    return [
        f"{RESULTS}/generated/{split}/{shard}.stats.json"
        for split in SPLITS
        for shard in shard_ids(split)
    ]


def card_settings(wildcards):
    return as_json(
        {
            "run_name": RUN,
            "model": config["model"],
            "engine": config["engine"],
            "sampling": {split: split_sampling(split) for split in SPLITS},
        }
    )


def card_release_args(wildcards, input):
    return " ".join(f"{split}={path}" for split, path in zip(SPLITS, input.releases))


def cpu_resources():
    # Unset (None) values are left out of the sbatch call: the cluster's defaults apply.
    return {
        "mem_mb": CLUSTER["cpu_mem_mb"],
        "runtime": CLUSTER["cpu_runtime_minutes"],
        "slurm_partition": CLUSTER["cpu_partition"],
        "slurm_account": CLUSTER["account"],
    }


def generate_threads():
    return CLUSTER["cpus_per_gpu"] * config["engine"]["tensor_parallel_size"]


@functools.cache
def planned_prompts_per_shard(split):
    from cosmoforge.plan import estimate_split

    return estimate_split(config, split, Path(workflow.basedir))["prompts_per_shard"]


def generate_runtime(wildcards, input):
    """Time limit of a generation job: its prompt count at the configured throughput."""
    from cosmoforge.plan import generate_runtime_minutes

    per_prompt = CLUSTER["expected_completion_tokens"] or split_sampling(wildcards.split)[
        "max_tokens"
    ]
    if os.path.exists(input.report):
        with open(input.report) as fh:
            prompts = json.load(fh)["per_shard"].get(str(int(wildcards.shard)), 0)
    else:  # before the prompts exist (dry-run): the plan's estimate
        prompts = planned_prompts_per_shard(wildcards.split)
    return generate_runtime_minutes(config, prompts, per_prompt)


def release_targets():
    return [f"{RESULTS}/release/README.md"]


def dedup_rank_of(wildcards):
    return dedup_rank(wildcards.split, wildcards.shard)


def bucket_rank(wildcards):
    return int(wildcards.bucket) * DEDUP["bucket_workers"] + int(wildcards.worker)


def parent_of_output(wildcards, output):
    return str(Path(output[0]).parent)


def grandparent_of_output(wildcards, output):
    return str(Path(output[0]).parents[1])


def parent_of_input(wildcards, input):
    return str(Path(input[0]).parent)


def grandparent_of_input(wildcards, input):
    return str(Path(input[0]).parents[1])


# Topic clustering of web seeds (workflow/rules/topics.smk). The clustered splits share one set
# of clusters; a split's web prompts then depend on its assignments and the decisions file.
TOPICS = config["topics"]


from cosmoforge.config import clustered_splits  # noqa: E402
from cosmoforge.topics import PLOTS as TOPIC_PLOTS  # noqa: E402

TOPIC_SPLITS = clustered_splits(config)
TOPIC_SHARDS = [f"{i:05d}" for i in range(TOPICS["shards"])]
TOPIC_SEED = TOPICS["kmeans"]["seed"] if TOPICS["kmeans"]["seed"] is not None else config["seed"]


def topic_files(kind, splits=None):
    """embeddings or assignments of every topic shard of `splits` (default: all clustered)."""
    return [
        f"{RESULTS}/topics/{kind}/{split}/{shard}.parquet"
        for split in (TOPIC_SPLITS if splits is None else splits)
        for shard in TOPIC_SHARDS
    ]


def split_topic_inputs(wildcards):
    if wildcards.split not in TOPIC_SPLITS:
        return {}
    return {
        "assignments": topic_files("assignments", [wildcards.split]),
        "decisions": f"{RESULTS}/topics/decisions.yaml",
    }


def topic_args(wildcards, input):
    if wildcards.split not in TOPIC_SPLITS:
        return ""
    return (
        f"--topic-assignments {' '.join(input.assignments)} --topic-decisions {input.decisions}"
    )


def topic_label_settings():
    label = TOPICS["label"]
    return as_json(
        {
            "seed": config["seed"],
            "k": TOPICS["kmeans"]["k"],
            "template": label["template"],
            "examples_per_cluster": label["examples_per_cluster"],
            "example_chars": label["example_chars"],
            "max_attempts": label["max_attempts"],
            "structured": label["structured"],
            "sampling": label["sampling"],
            "model": config["model"],
            "engine": config["engine"],
        }
    )


def topic_label_runtime(wildcards):
    from cosmoforge.plan import generate_runtime_minutes

    label = TOPICS["label"]
    requests = TOPICS["kmeans"]["k"] * label["max_attempts"]
    return generate_runtime_minutes(config, requests, label["sampling"]["max_tokens"])


def split_seed_args(wildcards, input):
    return " ".join(f"{s}={p}" for s, p in zip(TOPIC_SPLITS, input.seeds))


def topic_card_inputs(wildcards):
    if not TOPIC_SPLITS:
        return []
    return [f"{RESULTS}/topics/report/report.json"] + [
        f"{RESULTS}/topics/report/{plot}.png" for plot in TOPIC_PLOTS
    ]



def card_plots():
    return PLOTS + (list(TOPIC_PLOTS) if TOPIC_SPLITS else [])
