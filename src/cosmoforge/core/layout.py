"""The workflow contract: which jobs a config makes, where their files live, which settings
each stage gets. The Snakemake rules (workflow/rules/*.smk) and `cosmoforge plan` both read it
from here, so the job counts the plan prints are the jobs Snakemake schedules.

Splits are always in one canonical order (Cosmopedia's eight, then any others by name), never in
the order of keys in the config files: the dedup ranks number the generation shards in that
order, and an overlay that names one split must not renumber them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cosmoforge.core.config import (
    REPO_ROOT,
    clustered_splits,
    schema_for,
    split_extract_chars,
    split_sampling,
)
from cosmoforge.core.contracts import SPLITS, target_words
from cosmoforge.core.errors import ConfigError
from cosmoforge.core.settings import (
    CardSettings,
    GenerationSettings,
    PromptSettings,
    SeedSettings,
    Settings,
    TopicLabelSettings,
)

# Rules that run once per split and once per generation shard. Every other rule of
# workflow/rules/ runs once per run, unless it is counted apart below or made only on demand.
PER_SPLIT_RULES = ("seeds", "prompts")
PER_SHARD_RULES = ("generate", "dedup_signatures")
TOPIC_RULES = (
    "topics_embed",
    "topics_assign",
    "topics_fit",
    "topics_label",
    "topics_decide",
    "topics_report",
)
COUNTED_APART = ("convert_model", "dedup_buckets", *TOPIC_RULES)
# Made only when asked for (`make calibrate`, `make canary`), never by a run.
ON_DEMAND_RULES = ("calibrate", "canary")


def rules_dir(base_dir: str | Path = ".") -> Path:
    """workflow/rules of the checkout the run works in (`base_dir`), else of the checkout this
    package is installed from (an editable install)."""
    for candidate in (Path(base_dir) / "workflow" / "rules", REPO_ROOT / "workflow" / "rules"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"no workflow/rules under {Path(base_dir).resolve()}: job counts come from the workflow's "
        "rule files; run from the checkout or pass --base-dir"
    )


def workflow_rules(rules_dir: Path) -> list[str]:
    """The named rules of the workflow's .smk files (`rule NAME:` lines), sorted."""
    return sorted(
        {
            name
            for path in rules_dir.glob("*.smk")
            for name in re.findall(r"^rule (\w+):", path.read_text(encoding="utf-8"), re.M)
        }
    )


def per_run_rules(rules_dir: Path) -> list[str]:
    """The rules that run once per run: a new post-generation stage needs no entry here."""
    counted = {*PER_SPLIT_RULES, *PER_SHARD_RULES, *COUNTED_APART, *ON_DEMAND_RULES}
    return [rule for rule in workflow_rules(rules_dir) if rule not in counted]


CARD_PLOTS = ("format", "audience", "seed_data", "token_length")


def converts_model(config: dict) -> bool:
    """Whether the run converts its model from a packaged GGUF: only when its own jobs load the
    model with vLLM. A server's clients (backend openai) and the fake engine load none."""
    return bool(config["model"]["gguf"]) and config["engine"]["backend"] == "vllm"


def ordered_splits(config: dict) -> list[str]:
    known = [s for s in SPLITS if s in config["splits"]]
    return known + sorted(s for s in config["splits"] if s not in SPLITS)


def as_json(data) -> str:
    # Sorted keys: the same settings always give the same string, so Snakemake's params
    # trigger reruns only when a setting really changes.
    return json.dumps(data.as_dict() if isinstance(data, Settings) else data, sort_keys=True)


def release_file_name(shard: int, shards: int) -> str:
    """The hub's layout: train-00000-of-00310.parquet, ..."""
    return f"train-{shard:05d}-of-{shards:05d}.parquet"


class RunPaths:
    """Where a run's files are, from its name and each split's shard count alone (what a job
    that only reads per-shard files, such as the ledger, is given)."""

    def __init__(self, run_name: str, shard_counts: dict[str, int]):
        self.run = run_name
        self.results = f"results/{self.run}"
        self.logs = f"logs/{self.run}"
        self.shard_counts = dict(shard_counts)
        self.splits = list(self.shard_counts)
        self.gen_shards = [(split, shard) for split in self.splits for shard in self.shards(split)]
        self._rank = {key: rank for rank, key in enumerate(self.gen_shards)}

    def settings(self) -> dict:
        """What makes these paths, as a job's settings: {"run_name", "shards": {split: n}}."""
        return {"run_name": self.run, "shards": self.shard_counts}

    @classmethod
    def of_settings(cls, settings: dict) -> RunPaths:
        return cls(settings["run_name"], settings["shards"])

    # --- shards and ranks -------------------------------------------------------------------

    def shard_count(self, split: str) -> int:
        return self.shard_counts[split]

    def shards(self, split: str) -> list[str]:
        return [f"{i:05d}" for i in range(self.shard_count(split))]

    def dedup_rank(self, split: str, shard: str) -> int:
        """datatrove rank of a generation shard: its position in (canonical split, shard) order;
        stage 1 and stage 4 of the MinHash dedup must agree on it."""
        return self._rank[(split, shard)]

    def shard_of_rank(self, rank: int) -> tuple[str, str]:
        return self.gen_shards[rank]

    # --- paths ------------------------------------------------------------------------------

    # Each file of a run is named here once: the rules take their outputs from these (with
    # "{split}"/"{shard}" for wildcards) and their inputs from `rules.X.output` or from these.

    def seeds(self, split: str) -> str:
        return f"{self.results}/seeds/{split}.parquet"

    def seed_report(self, split: str) -> str:
        return f"{self.results}/seeds/{split}.report.json"

    def prompt_dir(self, split: str) -> str:
        return f"{self.results}/prompts/{split}"

    def prompt_shard(self, split: str, shard: str) -> str:
        return f"{self.prompt_dir(split)}/{shard}.parquet"

    def prompt_report(self, split: str) -> str:
        return f"{self.results}/prompts/{split}.report.json"

    def generated(self, split: str, shard: str) -> str:
        return f"{self.results}/generated/{split}/{shard}.parquet"

    def generation_stats(self, split: str, shard: str) -> str:
        return f"{self.results}/generated/{split}/{shard}.stats.json"

    def release_file(self, split: str, shard: str) -> str:
        """`shard` may be the wildcard "{shard}" (the rule's output pattern)."""
        count = self.shard_count(split)
        if shard == "{shard}":
            return f"{self.results}/release/{split}/train-{{shard}}-of-{count:05d}.parquet"
        return f"{self.results}/release/{split}/{release_file_name(int(shard), count)}"

    def release_files(self) -> list[str]:
        return [self.release_file(split, shard) for split, shard in self.gen_shards]

    def release_stats(self, split: str, shard: str) -> str:
        return f"{self.results}/release_stats/{split}/{shard}-of-{self.shard_count(split):05d}.json"

    def release_left_out(self, split: str, shard: str) -> str:
        count = self.shard_count(split)
        return f"{self.results}/release_stats/{split}/{shard}-of-{count:05d}.left_out.parquet"

    def release_stats_files(self) -> list[str]:
        return [self.release_stats(split, shard) for split, shard in self.gen_shards]

    def every_shard(self, path_of) -> list[str]:
        """`path_of(split, shard)` (one of the methods here) for every generation shard."""
        return [path_of(split, shard) for split, shard in self.gen_shards]

    def dedup_signature(self, bucket: str, rank: str) -> str:
        return f"{self.results}/dedup/signatures/bucket_{bucket}/{rank}.minhash.sig"

    def calibration(self) -> str:
        return f"{self.results}/calibration.json"

    def ledger(self) -> str:
        return f"{self.results}/ledger.parquet"

    def dedup_removed(self, split: str, shard: str) -> str:
        return f"{self.results}/dedup/removed/{split}/{shard}.parquet"

    def dedup_stayed(self, split: str, shard: str) -> str:
        return f"{self.results}/dedup/stayed/{split}/{shard}.json"

    def decont_contaminated(self, split: str, shard: str) -> str:
        return f"{self.results}/decont/contaminated/{split}/{shard}.parquet"


# Engine keys added after runs had started, left out of a job's settings while at their schema
# default: the settings of a run that does not use them stay as they were, so Snakemake (whose
# rerun triggers include params) does not take every finished generation shard for stale.
QUIET_ENGINE_KEYS = ("chat_template_kwargs", "max_restarts", "restart_backoff_s", "stall_timeout_s")


def quiet_engine(engine: dict) -> dict:
    defaults = schema_for("engine")["properties"]
    return {
        key: value
        for key, value in engine.items()
        if not (key in QUIET_ENGINE_KEYS and value == defaults[key].get("default"))
    }


class Layout(RunPaths):
    """The workflow contract of one validated config: its paths (RunPaths), the topic shards,
    and the per-stage settings and job counts."""

    def __init__(self, config: dict):
        self.config = config
        splits = ordered_splits(config)
        super().__init__(config["run_name"], {s: config["splits"][s]["shards"] for s in splits})
        self.topic_splits = clustered_splits(config)
        self.topic_shards = [f"{i:05d}" for i in range(config["topics"]["shards"])]

    def topic_file(self, kind: str, split: str, shard: str) -> str:
        """A topic shard's embeddings or assignments."""
        return f"{self.results}/topics/{kind}/{split}/{shard}.parquet"

    def topic_decisions(self) -> str:
        """The keep/drop and route of every cluster (user-editable)."""
        return f"{self.results}/topics/decisions.yaml"

    def topic_files(self, kind: str, splits: list[str] | None = None) -> list[str]:
        """embeddings or assignments of every topic shard of `splits` (default: all clustered)."""
        return [
            self.topic_file(kind, split, shard)
            for split in (self.topic_splits if splits is None else splits)
            for shard in self.topic_shards
        ]

    # --- settings each stage gets (as JSON on its command line) -----------------------------

    def seeds_settings(self, split: str) -> SeedSettings:
        cfg = self.config["splits"][split]
        return SeedSettings(
            sources=cfg["sources"],
            on_bad_row=self.config["seeds"]["on_bad_row"],
            max_seeds=cfg["max_seeds"],
            min_chars=self.config["seeds"]["min_chars"],
            max_chars=self.config["seeds"]["max_chars"],
            repair_text=self.config["seeds"]["repair_text"],
            html_to_text=self.config["seeds"]["html_to_text"],
            languages=self.config["seeds"]["languages"],
            language_min_confidence=self.config["seeds"]["language_min_confidence"],
            yields_to=self.yields_to(split),
        )

    def yields_to(self, split: str) -> list[str]:
        """The splits of this run before `split` in its seeds.across_splits group: a seed they
        kept is left out of `split`."""
        for group in self.config["seeds"]["across_splits"]:
            if split in group:
                earlier = group[: group.index(split)]
                return [s for s in earlier if s in self.config["splits"]]
        return []

    def prompts_settings(self, split: str) -> PromptSettings:
        cfg = self.config["splits"][split]
        return PromptSettings(
            seed=self.config["seed"],
            shards=cfg["shards"],
            extract_chars=split_extract_chars(self.config, split),
            target_words=target_words(split_sampling(self.config, split)["max_tokens"]),
            topic_probability=cfg["topic_probability"],
            templates=cfg["templates"],
        )

    def generate_settings(self, split: str | None = None) -> GenerationSettings:
        """A split's generation settings; without a split, the global sampling (for the jobs
        that run the engine for the whole run: calibrate, canary)."""
        return GenerationSettings(
            seed=self.config["seed"],
            model=self.config["model"],
            engine=quiet_engine(self.config["engine"]),
            sampling=self.config["sampling"]
            if split is None
            else split_sampling(self.config, split),
        )

    def topic_label_settings(self) -> TopicLabelSettings:
        topics = self.config["topics"]
        label = topics["label"]
        return TopicLabelSettings(
            seed=self.config["seed"],
            k=topics["kmeans"]["k"],
            template=label["template"],
            examples_per_cluster=label["examples_per_cluster"],
            example_chars=label["example_chars"],
            max_attempts=label["max_attempts"],
            structured=label["structured"],
            sampling=label["sampling"],
            model=self.config["model"],
            engine=quiet_engine(self.config["engine"]),
        )

    def card_settings(self) -> CardSettings:
        return CardSettings(
            run_name=self.run,
            model=self.config["model"],
            engine=quiet_engine(self.config["engine"]),
            sampling={split: split_sampling(self.config, split) for split in self.splits},
        )

    # --- job counts -------------------------------------------------------------------------

    def job_counts(self, base_dir: str | Path = ".") -> dict[str, int]:
        """Snakemake jobs per rule for a run from scratch (the model conversion only when the
        converted model is missing)."""
        config = self.config
        shards = len(self.gen_shards)
        jobs = {rule: len(self.splits) for rule in PER_SPLIT_RULES}
        jobs.update({rule: shards for rule in PER_SHARD_RULES})
        # one rule per split (its shard count is in the release file names)
        jobs.update({f"finish_shard_{s}": self.shard_count(s) for s in self.splits})
        jobs.update({rule: 1 for rule in per_run_rules(rules_dir(base_dir))})
        jobs["dedup_buckets"] = config["dedup"]["num_buckets"] * config["dedup"]["bucket_workers"]
        if self.topic_splits:
            topic_shards = len(self.topic_splits) * len(self.topic_shards)
            jobs.update(topics_embed=topic_shards, topics_assign=topic_shards)
            jobs.update(topics_fit=1, topics_label=1, topics_decide=1, topics_report=1)
        jobs["all"] = 1
        model_path = Path(config["model"]["path"])
        model_path = model_path if model_path.is_absolute() else Path(base_dir) / model_path
        jobs["convert_model"] = int(converts_model(config) and not model_path.exists())
        return jobs

    def cluster_jobs(self, base_dir: str | Path = ".") -> int:
        """Jobs submitted to Slurm: all but the rules that run on the submitting node."""
        jobs = self.job_counts(base_dir)
        return sum(jobs.values()) - sum(jobs.get(r, 0) for r in LOCAL_RULES)


# Per-shard output folders of a split (under results/<run>/), and how a file there names its
# shard: release files and their statistics also carry the split's shard count.
SHARD_FOLDERS = (
    "release/{split}",
    "release_stats/{split}",
    "generated/{split}",
    "dedup/removed/{split}",
    "dedup/stayed/{split}",
    "decont/contaminated/{split}",
)
_SHARD_NAME = re.compile(r"^(?:train-)?(\d{5})(?:-of-(\d{5}))?[.-]")


def stale_shard_files(config: dict, base_dir: str | Path = ".") -> list[str]:
    """One line per split whose per-shard folders hold files of another shard count: after a
    change of `shards`, they would sit beside the new ones (the release would load both)."""
    layout = Layout(config)
    lines = []
    for split in layout.splits:
        count = layout.shard_count(split)
        stale = []
        for pattern in SHARD_FOLDERS:
            folder = Path(base_dir) / layout.results / pattern.format(split=split)
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                match = _SHARD_NAME.match(path.name)
                if match and (int(match[1]) >= count or (match[2] and int(match[2]) != count)):
                    stale.append(path)
        if stale:
            folders = sorted({str(p.parent.relative_to(base_dir)) for p in stale})
            more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
            lines.append(
                f"config: splits.{split}.shards: {stale[0].relative_to(base_dir)}{more} belong "
                f"to another shard count than {count}; set shards back to keep them, or remove "
                f"{' '.join(folders)} to make the split again"
            )
    return lines


# Small aggregation steps that run on the submitting node rather than as cluster jobs.
LOCAL_RULES = (
    "all",
    "topics_decide",
    "topics_report",
    "dedup_report",
    "contamination_report",
    "card",
)
