import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The workflow contract (paths, shards, ranks, settings, job counts), the config checks and the
# planning helpers (time limits) come from the installed cosmoforge package (`make setup`
# installs it; so does every rule's conda env), the same code the jobs run.
try:
    from cosmoforge.core.config import ConfigError, check_inputs, resolve_config
    from cosmoforge.ops.jobs import JobResources
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


def seeds_kept_by(wildcards):
    # The seed files of the splits before this one in its seeds.across_splits group.
    return [L.seeds(other) for other in L.yields_to(wildcards.split)]


def seeds_kept_by_args(wildcards, input):
    if not input.kept_by:
        return ""
    pairs = zip(L.yields_to(wildcards.split), input.kept_by)
    return "--kept-by " + " ".join(f"{s}={p}" for s, p in pairs)


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
    return [L.dedup_signature(bucket, f"{L.dedup_rank(*gs):05d}") for gs in L.gen_shards]


def split_prompt_dirs(wildcards, input):
    return " ".join(f"{split}={path}" for split, path in zip(L.splits, input.prompts))


def decont_settings(wildcards):
    return as_json(config["decontamination"])


def benchmark_files(wildcards):
    return [b["path"] for b in config["decontamination"]["benchmarks"].values() if "path" in b]


# Slurm resources and time limits of each job (cosmoforge.ops.jobs, unit-tested).
JOBS = JobResources(config)


def generate_runtime(wildcards, input):
    return JOBS.generate_runtime(wildcards.split, f"{input.prompts}/{wildcards.shard}.report.json")


def generate_slurm_extra(wildcards, input):
    return JOBS.slurm_extra(generate_runtime(wildcards, input))


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
        "decisions": rules.topics_decide.output[0],
    }


def topic_args(wildcards, input):
    if wildcards.split not in TOPIC_SPLITS:
        return ""
    return f"--topic-assignments {' '.join(input.assignments)} --topic-decisions {input.decisions}"


def split_seed_args(wildcards, input):
    return " ".join(f"{s}={p}" for s, p in zip(TOPIC_SPLITS, input.seeds))


def topic_card_inputs(wildcards):
    if not TOPIC_SPLITS:
        return []
    return [rules.topics_report.output.report, *rules.topics_report.output.plots]


def card_plots():
    return list(CARD_PLOTS) + (list(TOPIC_PLOTS) if TOPIC_SPLITS else [])
