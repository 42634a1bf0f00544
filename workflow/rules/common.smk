import functools
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The workflow contract (paths, shards, ranks, settings, job counts), the config checks and the
# planning helpers (time limits) come from the installed cosmoforge package (`make setup`
# installs it; so does every rule's conda env), the same code the jobs run.
try:
    from cosmoforge.core.config import ConfigError, check_inputs, resolve_config
    from cosmoforge.core.layout import (
        CARD_PLOTS,
        Layout,
        as_json,
        converts_model,
        stale_shard_files,
    )
    from cosmoforge.stages.topics import PLOTS as TOPIC_PLOTS
except ImportError as exc:
    raise WorkflowError(
        f"cosmoforge cannot be imported ({exc}): install it into the environment that runs "
        "snakemake (`make setup` does; or `pip install .` from this checkout)"
    ) from None

# One resolution for Snakemake and every cosmoforge command (cosmoforge.core.config): the schema's
# defaults, then the --configfile files in order (config/config.yaml, the CPU demo, only when
# none is given), then --config. The Snakefile has no `configfile:` line on purpose: Snakemake
# would merge every --configfile over it, and the preset would inherit the demo's caps.
try:
    _resolved = resolve_config(workflow.overwrite_configfiles, workflow.config_settings.config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_resolved)

# A run (and a dry run) says first what its jobs will get, from the same plan `cosmoforge plan`
# prints, even when a missing input stops it below; the jobs' own Snakemake processes (Slurm job
# steps) stay quiet.
if workflow.is_main_process:
    from cosmoforge.ops.plan import dry_run_lines

    print("\n".join(dry_run_lines(config)), file=sys.stderr)

# A mistyped or missing input stops here, before Snakemake could reuse results made from the old
# one (it drops a job whose input is missing if the job's old output still exists).
_missing = check_inputs(config)
if _missing:
    raise WorkflowError(f"{len(_missing)} configured input(s) missing:\n" + "\n".join(_missing))
# Files of another shard count would sit beside the new ones (the release would load both).
_stale = stale_shard_files(config)
if _stale:
    raise WorkflowError("\n".join(_stale))

L = Layout(config)
RESULTS = L.results
LOGS = L.logs
SPLITS = L.splits
SLURM = config["slurm"]
DEDUP = config["dedup"]
SIG_BUCKETS = [f"{b:03d}" for b in range(DEDUP["num_buckets"])]
DEDUP_WORKERS = [f"{w:02d}" for w in range(DEDUP["bucket_workers"])]
TOPICS = config["topics"]
TOPIC_SPLITS = L.topic_splits
TOPIC_SHARDS = L.topic_shards
TOPIC_SEED = TOPICS["kmeans"]["seed"] if TOPICS["kmeans"]["seed"] is not None else config["seed"]


wildcard_constraints:
    split="|".join(SPLITS),
    shard=r"\d{5}",


def seeds_settings(wildcards):
    return as_json(L.seeds_settings(wildcards.split))


def prompts_settings(wildcards):
    return as_json(L.prompts_settings(wildcards.split))


def generate_settings(wildcards):
    return as_json(L.generate_settings(wildcards.split))


def template_paths(wildcards):
    folder = f"{config['prompts_dir']}/{wildcards.split}"
    names = config["splits"][wildcards.split]["templates"]
    if names is None:
        names = sorted(glob_wildcards(f"{folder}/{{name}}.yaml").name)
    return [f"{folder}/{name}.yaml" for name in names]


def seed_files(wildcards):
    sources = config["splits"][wildcards.split]["sources"]
    return [s["path"] for s in sources if s["format"] != "hf"]


def model_input(wildcards):
    # A model converted by this workflow is an input of generation; a hub id is not a file.
    return [config["model"]["path"]] if converts_model(config) else []


def shard_of_rank(wildcards):
    return L.generated(*L.shard_of_rank(int(wildcards.rank)))


def signatures_of_bucket(wildcards):
    bucket = f"{int(wildcards.bucket):03d}"
    return [
        f"{RESULTS}/dedup/signatures/bucket_{bucket}/{L.dedup_rank(*gs):05d}.minhash.sig"
        for gs in L.gen_shards
    ]


def all_generated(wildcards):
    return L.per_shard(f"{RESULTS}/generated/{{split}}/{{shard}}.parquet")


per_shard = L.per_shard


def decont_settings(wildcards):
    return as_json(config["decontamination"])


def benchmark_files(wildcards):
    return [b["path"] for b in config["decontamination"]["benchmarks"].values() if "path" in b]


def cpu_resources():
    # Unset (None) values are left out of the sbatch call: the cluster's defaults apply.
    return {
        "mem_mb": SLURM["cpu_mem_mb"],
        "runtime": SLURM["cpu_runtime_minutes"],
        "slurm_partition": SLURM["cpu_partition"],
        "slurm_account": SLURM["account"],
    }


def serves_itself():
    """Whether a generating job runs its own engine (vllm, fake), not a server's client."""
    return config["engine"]["backend"] != "openai"


def generate_threads():
    if not serves_itself():
        return 1  # an asyncio client: the server does the work
    return SLURM["cpus_per_gpu"] * config["engine"]["tensor_parallel_size"]


def engine_resources(runtime):
    """Resources of a job that generates. With its own engine: whole GPUs, tensor_parallel_size
    of them (locally one engine at a time: profiles/local caps vllm_engine at 1, since on CPU an
    engine binds every core). As a client of a server (engine.backend openai): a CPU job.
    """
    account = {"runtime": runtime, "slurm_account": SLURM["account"]}
    if not serves_itself():
        return cpu_resources() | account
    return account | {
        "vllm_engine": 1,
        "gpu": config["engine"]["tensor_parallel_size"],
        "gpu_model": SLURM["gpu_model"],
        "cpus_per_gpu": SLURM["cpus_per_gpu"],
        "mem_mb": SLURM["generate_mem_mb"],
        "slurm_partition": SLURM["gpu_partition"],
    }


@functools.cache
def planned_prompts_per_shard(split):
    from cosmoforge.ops.plan import estimate_split

    return estimate_split(config, split, Path(workflow.basedir))["prompts_per_shard"]


def generate_slurm_extra(wildcards, input):
    """SIGUSR1 slurm.stop_signal_seconds before the time limit, for jobs long enough."""
    from cosmoforge.ops.plan import stop_signal_seconds

    seconds = stop_signal_seconds(config, generate_runtime(wildcards, input))
    return f"--signal=USR1@{seconds}" if seconds else ""


def generate_runtime(wildcards, input):
    """Time limit of a generation job: its prompt count at the calibrated throughput
    (results/<run>/calibration.json), else at the configured one."""
    from cosmoforge.ops.plan import generate_runtime_minutes

    from cosmoforge.ops.plan import measured_split_rate

    measured_per_prompt, measured_rate = measured_split_rate(config, wildcards.split)
    per_prompt = (
        measured_per_prompt
        or SLURM["expected_completion_tokens"]
        or L.generate_settings(wildcards.split)["sampling"]["max_tokens"]
    )
    shard_report = f"{input.prompts}/{wildcards.shard}.report.json"
    if os.path.exists(shard_report):
        with open(shard_report) as fh:
            prompts = json.load(fh)["prompts"]
    else:  # before the prompts exist (dry-run): the plan's estimate
        prompts = planned_prompts_per_shard(wildcards.split)
    return generate_runtime_minutes(config, prompts, per_prompt, measured_rate)


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
topic_files = L.topic_files


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
    return f"--topic-assignments {' '.join(input.assignments)} --topic-decisions {input.decisions}"


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
    from cosmoforge.ops.plan import generate_runtime_minutes

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
    return list(CARD_PLOTS) + (list(TOPIC_PLOTS) if TOPIC_SPLITS else [])
